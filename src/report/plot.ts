/**
 * Charts as SVG files, for benchmark reports: a chart is data (series of (x, y) points, axis
 * titles, optional horizontal reference lines) and is rendered by Vega-Lite + Vega in Node,
 * headless (Vega's SVG renderer needs no browser and no native canvas).
 *
 * What this file is not: a charting toolkit. One chart kind drawn as lines or as grouped bars,
 * the options benchmarks need so far; add an option when a report needs it.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { writeFileAtomic } from '../format/atomic.ts';

export interface Series {
  name: string;
  points: { x: number; y: number }[];
}

export interface Axis {
  title: string;
  /** Logarithmic scale with this base (2 suits row counts 1, 2, 4, ...); linear when absent. */
  logBase?: number;
}

export interface LineChart {
  title: string;
  /**
   * 'line' (default): one line per series over a quantitative x. 'bar': x values are categories
   * (e.g. prompt numbers), with one bar per series side by side in each.
   */
  mark?: 'line' | 'bar';
  x: Axis;
  y: Axis;
  series: Series[];
  /** Dashed horizontal lines, e.g. a target. */
  yRules?: { y: number; label: string }[];
  /** Size of the plotting area in pixels (axes and legend come on top). */
  width?: number;
  height?: number;
}

function axisEncoding(field: 'x' | 'y', axis: Axis, tickValues?: number[]) {
  return {
    field,
    type: 'quantitative' as const,
    title: axis.title,
    scale: axis.logBase ? { type: 'log' as const, base: axis.logBase } : { zero: false },
    ...(tickValues ? { axis: { values: tickValues } } : {}),
  };
}

/** The Vega-Lite spec of `chart` (exposed so a report can embed the spec instead of the SVG). */
export function lineChartSpec(chart: LineChart): TopLevelSpec {
  const rows = chart.series.flatMap((s) => s.points.map((p) => ({ series: s.name, x: p.x, y: p.y })));
  // On a log axis the default ticks skip most powers of two; show every x that has a point.
  const xTicks = chart.x.logBase ? [...new Set(rows.map((r) => r.x))].sort((a, b) => a - b) : undefined;
  const rules = chart.yRules ?? [];
  const bars = chart.mark === 'bar';
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: chart.title,
    width: chart.width ?? 480,
    height: chart.height ?? 300,
    background: 'white',
    layer: [
      {
        data: { values: rows },
        mark: bars ? { type: 'bar' } : { type: 'line', point: true },
        encoding: {
          x: bars ? { field: 'x', type: 'ordinal', title: chart.x.title, axis: { labelAngle: 0 } } : axisEncoding('x', chart.x, xTicks),
          // Bars grow from zero: a scale starting elsewhere would misstate their lengths.
          y: bars && !chart.y.logBase ? { ...axisEncoding('y', chart.y), scale: { zero: true } } : axisEncoding('y', chart.y),
          ...(bars ? { xOffset: { field: 'series', type: 'nominal' } } : {}),
          color: { field: 'series', type: 'nominal', title: null },
        },
      },
      ...(rules.length === 0
        ? []
        : [
            {
              data: { values: rules },
              mark: { type: 'rule' as const, strokeDash: [4, 4], color: 'gray' },
              encoding: { y: { field: 'y', type: 'quantitative' as const } },
            },
            {
              data: { values: rules },
              mark: { type: 'text' as const, align: 'left' as const, dx: 4, dy: -6, color: 'gray' },
              encoding: {
                y: { field: 'y', type: 'quantitative' as const },
                x: { value: 0 },
                text: { field: 'label', type: 'nominal' as const },
              },
            },
          ]),
    ],
  };
}

/** Renders `chart` to an SVG document. */
export async function lineChartSvg(chart: LineChart): Promise<string> {
  const view = new vega.View(vega.parse(compile(lineChartSpec(chart)).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Renders `chart` into the SVG file at `path`; the file appears whole (written, then renamed). */
export async function writeLineChart(path: string, chart: LineChart): Promise<void> {
  writeFileAtomic(path, await lineChartSvg(chart));
}
