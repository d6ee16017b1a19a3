/** A self-contained HTML report with inline SVG charts (no scripts, no external assets). */
import type { RunOutput } from './main';
import { table } from './metrics';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

interface Series {
  name: string;
  points: [number, number][];
}

function lineChart(title: string, xLabel: string, yLabel: string, series: Series[], opts: { logX?: boolean } = {}): string {
  const W = 720, H = 260, L = 56, R = 150, T = 28, B = 40;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const fx = (x: number) => (opts.logX ? Math.log10(Math.max(x, 0.01)) : x);
  const x0 = Math.min(...xs.map(fx)), x1 = Math.max(...xs.map(fx), x0 + 1e-9);
  const y1 = Math.max(...ys, 1e-9);
  const sx = (x: number) => L + ((fx(x) - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => H - B - (y / y1) * (H - T - B);
  const paths = series
    .map((s, i) => {
      const d = s.points.map((p, k) => `${k ? 'L' : 'M'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join('');
      return `<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]!}" stroke-width="1.5"/>` +
        `<text x="${W - R + 8}" y="${T + 14 * i + 10}" fill="${COLORS[i % COLORS.length]!}" font-size="12">${esc(s.name)}</text>`;
    })
    .join('');
  const ticks = [0, 0.25, 0.5, 0.75, 1]
    .map((f) => `<text x="${L - 6}" y="${sy(f * y1) + 4}" font-size="10" text-anchor="end">${(f * y1).toFixed(y1 < 10 ? 2 : 0)}</text><line x1="${L}" x2="${W - R}" y1="${sy(f * y1)}" y2="${sy(f * y1)}" stroke="#eee"/>`)
    .join('');
  const xt = [0, 0.5, 1]
    .map((f) => {
      const v = x0 + f * (x1 - x0);
      const label = opts.logX ? Math.pow(10, v).toPrecision(2) : v.toFixed(0);
      return `<text x="${L + f * (W - L - R)}" y="${H - B + 14}" font-size="10" text-anchor="middle">${label}</text>`;
    })
    .join('');
  return `<figure><svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">
<text x="${L}" y="16" font-size="14" font-weight="bold">${esc(title)}</text>${ticks}${xt}
<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/><line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#333"/>
<text x="${(L + W - R) / 2}" y="${H - 6}" font-size="11" text-anchor="middle">${esc(xLabel)}</text>
<text x="12" y="${(T + H - B) / 2}" font-size="11" transform="rotate(-90 12 ${(T + H - B) / 2})" text-anchor="middle">${esc(yLabel)}</text>${paths}</svg></figure>`;
}

export function htmlReport(out: RunOutput): string {
  const util = out.results.map((r) => ({
    name: r.label,
    points: r.busySeries.map((b, i) => [(i * r.bucketSeconds) / 3600, b / r.capacity] as [number, number]),
  }));
  const queues = out.results.map((r) =>
    lineChart(
      `Pending jobs per tenant — ${r.label}`,
      'hours',
      'pending jobs',
      Object.entries(r.queueSeries).map(([t, s]) => ({ name: t, points: s.map((v, i) => [(i * r.bucketSeconds) / 3600, v] as [number, number]) })),
    ),
  );
  const cdf = out.results.map((r) => {
    const w = r.jobs.filter((j) => j.finish !== null).map((j) => Math.max(j.wait / 3600, 0.01)).sort((a, b) => a - b);
    const step = Math.max(1, Math.floor(w.length / 400));
    const pts: [number, number][] = [];
    for (let i = 0; i < w.length; i += step) pts.push([w[i]!, (i + 1) / w.length]);
    if (w.length) pts.push([w[w.length - 1]!, 1]);
    return { name: r.label, points: pts };
  });
  const checks = out.checks.map((c) => `<li>${c.ok ? '✅' : '❌'} ${esc(c.name)}: ${esc(c.detail)}</li>`).join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>nuri simulation</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px}pre{font-size:12px;overflow-x:auto}</style></head><body>
<h1>nuri trace simulation</h1>
<p>${out.scenario.jobs} jobs, ${out.scenario.tenants.length} tenants, ${out.scenario.capacity} GPUs, ${out.scenario.windowDays.toFixed(1)} days, seed ${out.args.seed}, requeue ${out.args.requeue}.</p>
<p>Quotas: ${esc(out.scenario.quotaRule)}.</p><ul>${out.scenario.enrichment.map((e) => `<li>${esc(e)}</li>`).join('')}</ul>
<h2>Checks</h2><ul>${checks}</ul>
<h2>Per policy and tenant</h2><pre>${esc(table(out.rows))}</pre>
<h2>Charts</h2>
${lineChart('Utilization over time', 'hours', 'busy GPUs / capacity', util)}
${lineChart('Wait CDF per policy', 'wait (hours, log scale)', 'fraction of jobs', cdf, { logX: true })}
${queues.join('\n')}
</body></html>`;
}
