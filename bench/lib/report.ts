/** Tables for the terminal (with ratios to the best peer) and markdown for the README. */
import { bestPeer, type Column, type Row, type WorkloadResult } from "./result";

function fmt(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export const RATIO_NOTE =
  "(×n) = value / best peer's; peers = the other caches on the Upstash gateway. † = RESP over TCP through the latency proxy (same latency, less CPU per request): shown, not a peer for ratios. — = not measured (no gateway counters over RESP)";

/** "6.50 (×1.08)": the value and its ratio to the best peer of that column. */
function cell(result: WorkloadResult, row: Row, column: Column): string {
  const value = row.values[column.key];
  const text = fmt(value, column.digits ?? 1);
  const best = bestPeer(result, column);
  if (best === null || value === null || value === undefined) return text;
  if (best === 0) return value === 0 ? `${text} (best)` : text;
  return `${text} (×${(value / best).toFixed(2)})`;
}

export function textTable(result: WorkloadResult): string {
  const header = ["contender", ...result.columns.map((c) => c.label)];
  const name = (r: Row) => (r.transport === "resp" ? `${r.label} †` : r.label);
  const lines = result.rows.map((r) => [name(r), ...result.columns.map((c) => cell(result, r, c))]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)));
  const pad = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join("  ");
  const out = [`== ${result.title} — ${result.setup}`];
  if (result.columns.length > 0) {
    out.push(pad(header), pad(widths.map((w) => "-".repeat(w))));
    for (const [i, l] of lines.entries()) {
      const note = result.rows[i]?.note;
      out.push(pad(l) + (note ? `   ${note}` : ""));
    }
  }
  for (const n of result.notes) out.push(`   ${n}`);
  if (result.columns.length > 0) out.push(`   ${RATIO_NOTE}`);
  return out.join("\n");
}

export function markdownTable(result: WorkloadResult): string {
  if (result.columns.length === 0) return `**${result.title}** — ${result.setup}\n`;
  const header = `| contender | ${result.columns.map((c) => c.label).join(" | ")} |`;
  const sep = `|---|${result.columns.map(() => "---:").join("|")}|`;
  const rows = result.rows.map(
    (r) =>
      `| ${r.transport === "resp" ? `${r.label} †` : r.label} | ${result.columns.map((c) => cell(result, r, c)).join(" | ")} |`,
  );
  const notes = result.rows
    .filter((r) => r.note)
    .map((r) => `${r.label}: ${r.note}`)
    .concat(result.notes);
  return [
    `**${result.title}** — ${result.setup}`,
    "",
    header,
    sep,
    ...rows,
    ...(notes.length ? ["", ...notes.map((n) => `- ${n}`)] : []),
    "",
  ].join("\n");
}
