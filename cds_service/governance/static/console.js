// The governance console's charts, drawn with the vendored Chart.js (chart.umd.min.js, served
// from this package: hospital intranets have no internet). Every chart reads its numbers from
// the HTML table beside it (td data-value), so the page holds one copy of each number and the
// tables stay readable, and exportable, without JavaScript.
"use strict";

const LIVE = "#1d4ed8";
const SILENT = "#c2410c";
const MARKER = "#6b21a8";

function cellValues(table, column) {
  return Array.from(table.querySelectorAll("tbody tr")).map((row) => {
    const cell = row.querySelector(`td[data-column="${column}"]`);
    if (!cell || cell.dataset.value === "") return null;
    return cell.dataset.value === undefined ? cell.textContent.trim() : Number(cell.dataset.value);
  });
}

// Dashed vertical lines where a new knowledge version appears, with its name on top.
const versionMarkers = {
  id: "versionMarkers",
  afterDatasetsDraw(chart, _args, options) {
    const { ctx, chartArea, scales } = chart;
    for (const mark of options.marks || []) {
      const x = scales.x.getPixelForValue(mark.index);
      ctx.save();
      ctx.strokeStyle = MARKER;
      ctx.lineWidth = 2;
      ctx.setLineDash([6, 4]);
      ctx.beginPath();
      ctx.moveTo(x, chartArea.top);
      ctx.lineTo(x, chartArea.bottom);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = MARKER;
      ctx.font = "bold 12px system-ui, sans-serif";
      const text = `knowledge ${mark.label}`;
      // Beside the line, on whichever side has room (the last week is at the right edge).
      const room = x + 4 + ctx.measureText(text).width <= chartArea.right;
      ctx.textAlign = room ? "left" : "right";
      ctx.fillText(text, room ? x + 4 : x - 4, chartArea.top + 12);
      ctx.restore();
    }
  },
};

function trendChart(figure) {
  const table = figure.querySelector("table.trend");
  const weeks = cellValues(table, "week");
  const marks = cellValues(table, "new-version")
    .map((label, index) => ({ label, index }))
    .filter((mark) => mark.label);
  const dataset = (label, column, color, dash) => ({
    label,
    data: cellValues(table, column),
    // A mode the rule never had in the period is left out of the drawing (not the legend).
    hidden: cellValues(table, column).every((value) => !value),
    borderColor: color,
    backgroundColor: color,
    borderDash: dash,
    borderWidth: 3,
    pointRadius: 4,
    spanGaps: false,
  });
  return new Chart(figure.querySelector("canvas"), {
    type: "line",
    data: {
      labels: weeks,
      datasets: [
        dataset("Live per 100 calls", "live-rate", LIVE, []),
        dataset("Silent per 100 calls", "silent-rate", SILENT, [8, 5]),
      ],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: {
        y: { beginAtZero: true, title: { display: true, text: "cards per 100 calls" } },
        x: { title: { display: true, text: "ISO week" } },
      },
      plugins: {
        legend: { position: "bottom", labels: { font: { size: 13 } } },
        versionMarkers: { marks },
      },
    },
    plugins: [versionMarkers],
  });
}

function reasonsChart(figure) {
  const table = figure.querySelector("table");
  return new Chart(figure.querySelector("canvas"), {
    type: "bar",
    data: {
      labels: cellValues(table, "reason"),
      datasets: [
        {
          label: "Overrides",
          data: cellValues(table, "overrides"),
          backgroundColor: "#b91c1c",
        },
      ],
    },
    options: {
      animation: false,
      indexAxis: "y",
      maintainAspectRatio: false,
      scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
      plugins: { legend: { display: false } },
    },
  });
}

document.querySelectorAll("figure.trend-chart").forEach(trendChart);
document.querySelectorAll("figure.reasons-chart").forEach(reasonsChart);
