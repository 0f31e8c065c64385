// edgecache dashboard, in the browser. Served by the Worker as text (GET /admin/dashboard/app.js)
// next to uPlot; all data comes from GET /admin/stats with the admin token kept in this tab.
// Counters in /admin/stats are totals since the stats hash was created: rates and ratios are
// computed here from successive snapshots, so the Worker keeps no time series.
(() => {
  const TOKEN_KEY = "edgecache.adminToken";
  const params = new URLSearchParams(location.search);
  /**
   * Poll period in ms (?interval=1000): at least 500 so a tab cannot hammer the API, at most
   * ten minutes (browsers keep timer delays in 32 bits: one of 1e10 ms fired at once, and the
   * tab polled nonstop).
   */
  const asked = Number(params.get("interval"));
  const INTERVAL =
    Number.isFinite(asked) && asked > 0 ? Math.min(600_000, Math.max(500, asked)) : 3000;
  /** Points kept per chart: ten minutes at the default period. */
  const KEEP = 200;
  const body = document.body;
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ formatting

  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
  const fmtInt = (v) => (v == null ? "—" : Math.round(v).toLocaleString("en-US"));
  function fmtBytes(v) {
    if (v == null) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let x = v;
    while (x >= 1024 && i < units.length - 1) {
      x /= 1024;
      i++;
    }
    return `${x.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
  }
  function fmtAge(ms) {
    if (ms == null) return "—";
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 90) return `${s} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  /** Replaces a tile grid's content: [label, value, title?] triples. */
  function tiles(id, items) {
    const box = $(id);
    box.replaceChildren(
      ...items.map(([label, value, title]) => {
        const tile = el("div", undefined, "tile");
        tile.dataset.key = label;
        if (title) tile.title = title;
        tile.append(el("div", value, "v"), el("div", label, "k"));
        return tile;
      }),
    );
  }

  // ------------------------------------------------------------------ charts

  const colors = { HIT: "#12b76a", STALE: "#f79009", MISS: "#d92d20", BYPASS: "#7a5af8" };
  const series = { t: [], HIT: [], STALE: [], MISS: [], BYPASS: [], ratio: [], perRead: [] };
  let rateChart = null;
  let ratioChart = null;

  function chartWidth(id) {
    return Math.max(320, $(id).clientWidth || 400);
  }

  function makeCharts() {
    const time = { time: true };
    rateChart = new uPlot(
      {
        width: chartWidth("chart-rates"),
        height: 220,
        legend: { live: false },
        scales: { x: time, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
        axes: [{}, { label: "reads/s", size: 60 }],
        series: [
          {},
          ...["HIT", "STALE", "MISS", "BYPASS"].map((name) => ({
            label: name,
            stroke: colors[name],
            width: 2,
            value: (_u, v) => (v == null ? "—" : v.toFixed(1)),
          })),
        ],
      },
      [[], [], [], [], []],
      $("chart-rates"),
    );
    ratioChart = new uPlot(
      {
        width: chartWidth("chart-ratio"),
        height: 220,
        legend: { live: false },
        scales: {
          x: time,
          "%": { range: [0, 100] },
          rpr: { range: (_u, _min, max) => [0, Math.max(2, Math.ceil(max))] },
        },
        axes: [
          {},
          { scale: "%", label: "hit ratio %", size: 60 },
          { scale: "rpr", side: 1, label: "Redis req / read", grid: { show: false }, size: 60 },
        ],
        series: [
          {},
          {
            label: "hit ratio %",
            scale: "%",
            stroke: colors.HIT,
            width: 2,
            value: (_u, v) => (v == null ? "—" : `${v.toFixed(1)} %`),
          },
          {
            label: "Redis requests per read",
            scale: "rpr",
            stroke: "#2e90fa",
            width: 2,
            value: (_u, v) => (v == null ? "—" : v.toFixed(2)),
          },
        ],
      },
      [[], [], []],
      $("chart-ratio"),
    );
    window.addEventListener("resize", () => {
      rateChart.setSize({ width: chartWidth("chart-rates"), height: 220 });
      ratioChart.setSize({ width: chartWidth("chart-ratio"), height: 220 });
    });
  }

  // ------------------------------------------------------------------ snapshots → points

  let previous = null;

  /** The counters the charts need, from one /admin/stats answer. */
  function counters(cache) {
    const c = cache ?? {};
    return {
      HIT: num(c.hits) + num(c.l1_hits),
      STALE: num(c.stale_hits),
      MISS: num(c.misses),
      BYPASS: num(c.bypass),
      reads: num(c.reads),
      readRequests: num(c.read_requests),
    };
  }

  function addPoint(cache) {
    // An answer without counters (Redis failed that poll) is no snapshot: the next point spans
    // back to the last real one. Taken as zeros, it charted the all-time totals as one
    // interval's rate.
    if (!cache) return;
    const now = Date.now();
    const current = { at: now, c: counters(cache) };
    const before = previous;
    previous = current;
    if (!before) return;
    const dt = (now - before.at) / 1000;
    const d = {};
    for (const name of Object.keys(current.c)) d[name] = current.c[name] - before.c[name];
    // A counter that went down means the stats hash was reset (FLUSHDB, eviction): skip.
    if (dt <= 0 || Object.values(d).some((v) => v < 0)) return;
    series.t.push(now / 1000);
    for (const name of ["HIT", "STALE", "MISS", "BYPASS"]) series[name].push(d[name] / dt);
    const answered = d.HIT + d.STALE + d.MISS;
    series.ratio.push(answered > 0 ? ((d.HIT + d.STALE) / answered) * 100 : null);
    series.perRead.push(d.reads > 0 ? d.readRequests / d.reads : null);
    for (const list of Object.values(series)) if (list.length > KEEP) list.shift();
    rateChart.setData([series.t, series.HIT, series.STALE, series.MISS, series.BYPASS]);
    ratioChart.setData([series.t, series.ratio, series.perRead]);
    const reads = series.HIT.concat(series.STALE, series.MISS, series.BYPASS);
    body.dataset.samples = String(series.t.length);
    body.dataset.readsPerSecondMax = String(Math.max(0, ...reads).toFixed(2));
    body.dataset.hitRatio = String(series.ratio.filter((v) => v != null).at(-1) ?? "");
  }

  // ------------------------------------------------------------------ panels

  function renderLoads(c) {
    const g = (name) => (c ? num(c[name]) : null);
    const avoided = c ? g("coalesced") + g("lease_waits") - g("lease_timeouts") : null;
    tiles("tiles-loads", [
      ["loads", fmtInt(g("loads")), "Loader calls (Postgres reads) the engine ran"],
      ["loads avoided", fmtInt(avoided), "coalesced + lease waits − lease timeouts"],
      ["coalesced", fmtInt(g("coalesced")), "Callers that joined a load running in their engine"],
      [
        "vouched by a check",
        fmtInt(g("check_vouched")),
        "Late joiners served on a check riding on another read: no request of their own",
      ],
      ["lease waits", fmtInt(g("lease_waits")), "Callers that waited for another's lease"],
      ["lease timeouts", fmtInt(g("lease_timeouts")), "Waiters that gave up and loaded"],
      ["STALE serves", fmtInt(g("stale_hits")), "Served in the grace window while refreshing"],
      ["fail-safe serves", fmtInt(g("fail_safe")), "Loader failed; an expired value was served"],
      ["BYPASS", fmtInt(g("bypass")), "Redis unreachable: served from the loader"],
      ["Redis errors", fmtInt(g("redis_errors"))],
      ["load errors", fmtInt(g("load_errors"))],
      ["hit ratio (all time)", c ? `${(num(c.hit_ratio) * 100).toFixed(1)} %` : "—"],
      [
        "Redis req / read (all time)",
        c && num(c.reads) > 0 ? (num(c.read_requests) / num(c.reads)).toFixed(2) : "—",
      ],
    ]);
  }

  function renderHot(hot) {
    const rows = (hot ?? []).slice(0, 10).map(({ key, score }) => {
      const tr = el("tr");
      tr.append(el("td", key), el("td", score.toFixed(1), "n"));
      return tr;
    });
    if (rows.length === 0) {
      const tr = el("tr");
      const td = el("td", hot ? "no reads sampled in the current windows" : "unavailable");
      td.colSpan = 2;
      tr.append(td);
      rows.push(tr);
    }
    $("hot").replaceChildren(...rows);
    $("hot").dataset.count = String(hot?.length ?? 0);
  }

  function renderOutbox(outbox) {
    tiles("tiles-outbox", [
      ["outbox pending", fmtInt(outbox?.pending), "Invalidations not yet applied to Redis"],
      [
        "parked rows",
        fmtInt(outbox?.stuck),
        "Rows that failed every drain attempt, or dead letters that are not events: GET /admin/outbox lists them",
      ],
      ["oldest pending", fmtAge(outbox?.oldestAgeMs), "Lag: age of the oldest pending row"],
    ]);
  }

  /** One line per heartbeat: the figures an operator looks for, any error first. */
  function summary(name, beat) {
    const parts = [];
    const error = (v) => (v && typeof v === "object" && "error" in v ? String(v.error) : null);
    if (name === "warm") {
      const d = beat.drain ?? {};
      const w = beat.warm ?? {};
      parts.push(
        error(d)
          ? `drain failed: ${error(d)}`
          : typeof d.skipped === "string"
            ? `outbox not read: ${d.skipped}`
            : `outbox: ${d.applied ?? 0} applied, ${d.queued ?? 0} queued`,
        error(w)
          ? `warm failed: ${error(w)}`
          : `warm: ${w.hot ?? 0} hot, ${w.reloaded ?? 0} reloaded${w.stoppedEarly ? ` (${w.stoppedEarly})` : ""}`,
        `${beat.subrequests ?? "?"} subrequests`,
      );
    } else if (name === "deadLetter") {
      if (beat.error) parts.push(String(beat.error));
      parts.push(
        `${beat.messages ?? 0} dead message${beat.messages === 1 ? "" : "s"}`,
        `${beat.released ?? 0} outbox rows and ${beat.requeued ?? 0} events back to the drains`,
        `${beat.parked ?? 0} not events (parked)`,
      );
    } else {
      const a = beat.applied ?? {};
      if (beat.error) parts.push(String(beat.error));
      parts.push(
        `${beat.messages ?? 0} message${beat.messages === 1 ? "" : "s"}: ${beat.acked ?? 0} acked, ${beat.retried ?? 0} retried`,
        `${a.keys ?? 0} keys, ${a.tags ?? 0} tags, ${a.versions ?? 0} versions applied`,
        `${beat.subrequests ?? "?"} subrequests`,
      );
    }
    return parts.join(" · ");
  }

  function renderJobs(jobs) {
    const rows = [
      ["cron (warm)", "warm", jobs?.warm],
      ["queue (purge)", "purge", jobs?.purge],
      ["queue (dead letters)", "deadLetter", jobs?.deadLetter],
    ].map(([label, name, beat]) => {
      const tr = el("tr");
      const at = beat && typeof beat.at === "number" ? beat.at : null;
      tr.append(
        el("td", label),
        el("td", at ? `${fmtAge(Date.now() - at)} ago` : jobs ? "never" : "unavailable"),
        el("td", beat ? summary(name, beat) : ""),
      );
      return tr;
    });
    $("jobs").replaceChildren(...rows);
  }

  function renderRedis(r) {
    tiles("tiles-redis", [
      ["used memory", fmtBytes(r.used_memory)],
      ["maxmemory", r.maxmemory === 0 ? "no limit" : fmtBytes(r.maxmemory)],
      ["policy", r.maxmemory_policy ?? "—"],
      ["evicted keys", fmtInt(r.evicted_keys)],
      ["expired keys", fmtInt(r.expired_keys)],
    ]);
    $("redis-note").textContent = r.reason ?? "";
  }

  // ------------------------------------------------------------------ states

  function setBanner(message) {
    const banner = $("banner");
    banner.textContent = message ?? "";
    banner.classList.toggle("show", Boolean(message));
  }

  function showLogin(message) {
    body.dataset.state = "need-token";
    $("board").classList.add("hidden");
    $("logout").classList.add("hidden");
    $("login").classList.add("show");
    $("login-error").textContent = message ?? "";
    $("status").textContent = "waiting for the admin token";
    $("token").focus();
  }

  function showBoard() {
    $("login").classList.remove("show");
    $("board").classList.remove("hidden");
    $("logout").classList.remove("hidden");
    if (!rateChart) makeCharts();
  }

  function render(stats) {
    showBoard();
    addPoint(stats.cache);
    renderLoads(stats.cache);
    renderHot(stats.hotKeys);
    renderOutbox(stats.outbox);
    renderJobs(stats.jobs);
    renderRedis(stats.redis);
    const failing = Object.entries(stats.errors ?? {});
    setBanner(
      failing.length
        ? `Some figures are missing: ${failing.map(([k, v]) => `${k}: ${v}`).join("; ")}`
        : "",
    );
    body.dataset.state = failing.length ? "partial" : "ok";
    $("status").textContent =
      `updated ${new Date().toLocaleTimeString()} · every ${INTERVAL / 1000} s`;
  }

  function showFailure(message) {
    body.dataset.state = "error";
    setBanner(message);
    $("status").textContent = "admin API not answering";
  }

  // ------------------------------------------------------------------ polling

  let timer = null;

  async function poll() {
    clearTimeout(timer);
    // Each refresh costs Redis commands and a SQL query: none while the tab is hidden.
    if (document.hidden) {
      $("status").textContent = "paused while the tab is hidden";
      return;
    }
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      showLogin();
      return;
    }
    const retry = `retrying every ${INTERVAL / 1000} s`;
    try {
      const res = await fetch("/admin/stats", {
        headers: { authorization: `Bearer ${token}` },
        cache: "no-store",
      });
      if (res.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        setBanner("");
        showLogin("That token was refused (401). Enter the Worker's ADMIN_TOKEN.");
        return;
      }
      if (!res.ok) {
        let detail = "";
        try {
          detail = (await res.json()).error.message;
        } catch {
          detail = res.statusText;
        }
        showFailure(`GET /admin/stats answered ${res.status} (${detail}); ${retry}.`);
      } else {
        render(await res.json());
      }
    } catch (error) {
      showFailure(`Cannot reach the admin API (${error.message}); ${retry}.`);
    }
    timer = setTimeout(poll, INTERVAL);
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("login-error").textContent = "";
    void poll();
  });

  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(timer);
    showLogin();
  });

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && sessionStorage.getItem(TOKEN_KEY)) void poll();
  });

  if (typeof uPlot !== "function") {
    showFailure("The chart library (/admin/dashboard/uplot.js) did not load; reload the page.");
    return;
  }
  void poll();
})();
