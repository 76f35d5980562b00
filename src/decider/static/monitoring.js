// The monitoring charts, drawn with Chart.js from the figures in the JSON block #monitoring-figures
// (templates/monitoring_figures.html). Loaded by /monitoring after Chart.js; inlined into the self-contained
// `decider report` (monitoring/report.py). A file, not an inline script, so the page runs under the
// Content-Security-Policy (web/headers.py).
(function () {
  "use strict";
  var fig = JSON.parse(document.getElementById("monitoring-figures").textContent);
  var C = { auto: "#2456c9", queue: "#d08b00", audit: "#8a5a00", done: "#1d7a46", train: "#9aa4b5",
            danger: "#b3261e", extra: "#6b3fa0" };
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.plugins.legend.labels.boxWidth = 12;  // small legend keys leave the plot more room
  // The time axis (monitoring/buckets.py): every bucket named in full in its tooltip; ticks on every k-th,
  // as the figures give them ("14:00", with the date beneath where the day changes; "" where skipped).
  var labels = fig.timeline.map(function (b) { return b.label; });
  var timeTicks = { autoSkip: false, maxRotation: 0, callback: function (v, i) { return fig.timeline[i].tick; } };
  // A lone value (one bucket, or one bucket with data) would be a 2 px dot on a line: draw it larger.
  var radius = function (data) { return data.filter(function (v) { return v !== null; }).length > 1 ? 2 : 5; };
  var line = function (o) { o.pointRadius = radius(o.data); return o; };
  var xTime = { offset: labels.length === 1, ticks: timeTicks };  // a single bucket in the middle, not on the left edge
  // Many bins: label every other one counting back from the last, so the top bin (1.0, or ≥ the last
  // training quantile) always has its label; the tooltip names every bin.
  var binTicks = function (binLabels) {
    return { autoSkip: false, maxRotation: 90, callback: function (v, i) {
      return binLabels.length <= 10 || (binLabels.length - 1 - i) % 2 === 0 ? binLabels[i] : ""; } };
  };
  var pctAxis = { min: 0, max: 1, position: "right", grid: { drawOnChartArea: false },
                  ticks: { callback: function (v) { return Math.round(v * 100) + "%"; } } };
  function draw(id, config) {
    var el = document.getElementById(id);
    if (el) { new Chart(el, config); }
  }
  draw("chart-timeline", { data: { labels: labels, datasets: [
      { type: "bar", label: "auto", data: fig.timeline.map(function (b) { return b.auto; }), backgroundColor: C.auto, stack: "c" },
      { type: "bar", label: "queued", data: fig.timeline.map(function (b) { return b.queued; }), backgroundColor: C.queue, stack: "c" },
      line({ type: "line", label: "automation rate", data: fig.timeline.map(function (b) { return b.automation_rate; }), borderColor: C.done, backgroundColor: C.done, yAxisID: "rate", spanGaps: true, clip: 6 })
    ] }, options: { scales: { x: { stacked: true, ticks: timeTicks }, y: { stacked: true, beginAtZero: true, title: { display: true, text: "cases" } }, rate: pctAxis } } });
  draw("chart-queue", { type: "line", data: { labels: labels, datasets: [
      line({ label: "queued", data: fig.timeline.map(function (b) { return b.queued; }), borderColor: C.queue, backgroundColor: C.queue }),
      line({ label: "audits", data: fig.timeline.map(function (b) { return b.audits; }), borderColor: C.audit, backgroundColor: C.audit }),
      line({ label: "reviews done", data: fig.timeline.map(function (b) { return b.reviews_done; }), borderColor: C.done, backgroundColor: C.done })
    ] }, options: { scales: { x: xTime, y: { beginAtZero: true } } } });
  var conf = fig.outputs.confidence;
  var confLabels = conf.edges.slice(0, -1).map(function (e, i) { return e.toFixed(2) + "–" + conf.edges[i + 1].toFixed(2); });
  draw("chart-confidence", { type: "bar", data: { labels: confLabels, datasets: [
      { label: "decided automatically", data: conf.auto, backgroundColor: C.auto, stack: "c" },
      { label: "queued", data: conf.queue, backgroundColor: C.queue, stack: "c" }
    ] }, options: { scales: { x: { stacked: true, ticks: binTicks(confLabels) }, y: { stacked: true, beginAtZero: true } } } });
  var classes = fig.outputs.classes.classes;
  draw("chart-classes", { type: "bar", data: { labels: classes.map(function (k) { return k.label; }), datasets: [
      { label: "live", data: classes.map(function (k) { return k.live_share; }), backgroundColor: C.auto },
      { label: "training", data: classes.map(function (k) { return k.train_share; }), backgroundColor: C.train }
    ] }, options: { scales: { y: { min: 0, max: 1, ticks: pctAxis.ticks } } } });
  var qualityLines = [["model_accuracy", "model accuracy", C.auto], ["auto_accuracy", "automatic decisions", C.done],
                      ["human_model_agreement", "human–model agreement", C.queue], ["audit_agreement", "upheld by audits", C.extra]];
  draw("chart-quality", { type: "line", data: { labels: labels, datasets: qualityLines.map(function (l) {
      return line({ label: l[1], data: fig.timeline.map(function (b) { return b.quality[l[0]].value; }), borderColor: l[2], backgroundColor: l[2], spanGaps: true, clip: 6 });
    }) }, options: { scales: { x: xTime, y: { min: 0, max: 1, ticks: { stepSize: 0.25, callback: pctAxis.ticks.callback } } } } });
  fig.drift.features.forEach(function (f, i) {
    var e = f.bins.edges.map(function (x) { return +x.toFixed(3); }), n = e.length;
    var binLabels = f.bins.expected.map(function (_, k) {
      return k === 0 ? "< " + e[0] : (k === n ? "≥ " + e[n - 1] : e[k - 1] + "–" + e[k]);
    });
    draw("chart-drift-" + i, { type: "bar", data: { labels: binLabels, datasets: [
        { label: "live (n=" + f.n + ")", data: f.bins.actual, backgroundColor: f.flag ? C.danger : C.auto },
        { label: "training", data: f.bins.expected, backgroundColor: C.train }
      ] }, options: { plugins: { title: { display: true, text: "PSI " + (f.psi === null ? "–" : f.psi.toFixed(3)) +
        " · KS p " + (f.ks_pvalue === null ? "–" : f.ks_pvalue.toPrecision(2)) } },
        scales: { x: { ticks: binTicks(binLabels) }, y: { beginAtZero: true, ticks: pctAxis.ticks } } } });
  });
  (fig.drift.categories || []).forEach(function (f, i) {
    var binLabels = f.bins.labels;
    draw("chart-category-" + i, { type: "bar", data: { labels: binLabels, datasets: [
        { label: "live (n=" + f.n + ")", data: f.bins.actual, backgroundColor: f.flag ? C.danger : C.auto },
        { label: "training", data: f.bins.expected, backgroundColor: C.train }
      ] }, options: { plugins: { title: { display: true, text: "chi-square p " +
        (f.chi2_pvalue === null ? "–" : f.chi2_pvalue.toPrecision(2)) + " · PSI " + (f.psi === null ? "–" : f.psi.toFixed(3)) } },
        scales: { x: { ticks: binTicks(binLabels) }, y: { beginAtZero: true, ticks: pctAxis.ticks } } } });
  });
  document.documentElement.dataset.chartsReady = "yes";
})();
