/**
 * The README's chart, drawn as plain SVG (no dependency, no network): four panels of
 * horizontal bars, one bar per contender, edgecache highlighted.
 */
import type { WorkloadResult } from "./result";

export interface Panel {
  title: string;
  workload: string;
  column: string;
  /** Shown under the title, e.g. "ms, lower is better". */
  unit: string;
  digits: number;
}

export const PANELS: Panel[] = [
  {
    title: "Warm hit p50",
    workload: "warm",
    column: "p50",
    unit: "ms · lower is better",
    digits: 1,
  },
  {
    title: "Stampede p50 (one isolate)",
    workload: "stampede",
    column: "p50",
    unit: "ms · lower is better",
    digits: 0,
  },
  {
    title: "Zipf mixed throughput",
    workload: "mixed",
    column: "opsPerSec",
    unit: "ops/s · higher is better",
    digits: 0,
  },
  {
    title: "Stale reads after an acknowledged write",
    workload: "mixed",
    column: "staleReads",
    unit: "count in the mixed run · lower is better",
    digits: 0,
  },
];

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

export function renderChart(results: readonly WorkloadResult[], subtitle: string): string {
  const panelW = 470;
  const labelW = 190;
  const barH = 18;
  const gap = 6;
  const rowsMax = Math.max(1, ...results.map((r) => r.rows.length));
  const panelH = 52 + rowsMax * (barH + gap) + 10;
  const cols = 2;
  const width = cols * panelW + 30;
  const height = 56 + Math.ceil(PANELS.length / cols) * panelH + 22;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="bench-title" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
    `<title id="bench-title">edgecache vs peers: warm hit p50, stampede p50, mixed throughput and stale reads, measured by npm run bench</title>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="15" y="24" font-size="16" font-weight="600" fill="#111">edgecache vs peers — npm run bench</text>`,
    `<text x="15" y="42" fill="#555">${esc(subtitle)}</text>`,
  ];
  PANELS.forEach((panel, i) => {
    const x0 = 15 + (i % cols) * panelW;
    const y0 = 56 + Math.floor(i / cols) * panelH;
    const result = results.find((r) => r.id === panel.workload);
    parts.push(
      `<text x="${x0}" y="${y0 + 16}" font-size="13" font-weight="600" fill="#111">${esc(panel.title)}</text>`,
      `<text x="${x0}" y="${y0 + 32}" fill="#666">${esc(panel.unit)}</text>`,
    );
    if (!result) {
      parts.push(`<text x="${x0}" y="${y0 + 56}" fill="#999">not run</text>`);
      return;
    }
    const values = result.rows.map((r) => r.values[panel.column] ?? 0);
    const max = Math.max(1e-9, ...values.map((v) => v ?? 0));
    const barMax = panelW - labelW - 70;
    result.rows.forEach((row, j) => {
      const v = row.values[panel.column] ?? 0;
      const y = y0 + 44 + j * (barH + gap);
      const w = Math.max(1, (v / max) * barMax);
      const subject = row.contender === "edgecache";
      parts.push(
        `<text x="${x0 + labelW - 8}" y="${y + barH - 5}" text-anchor="end" fill="#333"${subject ? ' font-weight="600"' : ""}>${esc(row.transport === "resp" ? `${row.label} †` : row.label)}</text>`,
        `<rect x="${x0 + labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" rx="2" fill="${subject ? "#e8590c" : "#868e96"}"/>`,
        `<text x="${x0 + labelW + w + 6}" y="${y + barH - 5}" fill="#111">${v.toLocaleString("en-US", { maximumFractionDigits: panel.digits })}</text>`,
      );
    });
  });
  parts.push(
    `<text x="15" y="${height - 10}" fill="#666">† RESP via a TCP proxy with the same latency, not HTTP via the Upstash gateway: less CPU per request, not like for like.</text>`,
    "</svg>",
  );
  return `${parts.join("\n")}\n`;
}
