// Draws every <canvas data-chart='{"type", "labels", "datasets", "stacked"}'> with Chart.js,
// on load and in content htmx swaps in. Each drawn canvas gets data-points: how many
// points (bars, slices) Chart.js laid out, which the browser tests read.
(function () {
  "use strict";
  var palette = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04"];

  function colors(spec, index) {
    if (spec.type !== "doughnut") return palette[index % palette.length];
    return spec.labels.map(function (_, j) { return palette[j % palette.length]; });
  }

  function options(spec) {
    var base = { animation: false, responsive: true, maintainAspectRatio: false };
    if (spec.type !== "doughnut") {
      base.scales = {
        x: { stacked: spec.stacked },
        y: { stacked: spec.stacked, beginAtZero: true }
      };
    }
    return base;
  }

  function draw(canvas) {
    if (canvas.dataset.drawn) return;
    var spec = JSON.parse(canvas.dataset.chart);
    var datasets = spec.datasets.map(function (d, i) {
      var color = colors(spec, i);
      return { label: d.label, data: d.data, backgroundColor: color, borderColor: color };
    });
    var chart = new Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: datasets },
      options: options(spec)
    });
    var points = 0;
    datasets.forEach(function (_, i) { points += chart.getDatasetMeta(i).data.length; });
    canvas.dataset.drawn = "true";
    canvas.dataset.points = String(points);
  }

  function drawAll(root) {
    var scope = root && root.querySelectorAll ? root : document;
    scope.querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawAll(document);
    if (!window.htmx) return;
    window.htmx.onLoad(drawAll);
    document.body.addEventListener("htmx:beforeCleanupElement", function (event) {
      var chart = window.Chart && window.Chart.getChart(event.target);
      if (chart) chart.destroy();
    });
  });
})();
