// Finance and report pages: one chart each, drawn with the locally served ECharts from the page's
// JSON under /admin/api/... (the same numbers as the table and the export). Amounts arrive as yuan
// strings; they become numbers here only to be drawn.
(function () {
  "use strict";
  var el = document.getElementById("report-chart");
  if (!el) return;
  var labels = JSON.parse(el.dataset.labels || "{}");
  var num = function (s) { return s === null || s === undefined ? null : Number(s); };
  var COLORS = { sharp: "#cf2e2e", peak: "#f0903a", flat: "#1664c0", valley: "#2e9d57" };

  function empty() {
    el.style.height = "auto";
    el.innerHTML = '<p class="muted">' + el.dataset.empty + "</p>";
    el.dataset.drawn = "empty";
  }

  function draw(option) {
    if (!window.echarts) { empty(); return null; }
    var chart = echarts.init(el);
    chart.setOption(Object.assign({ animation: false, tooltip: { trigger: "axis" }, legend: { top: 0 },
                                    grid: { left: 60, right: 50, top: 34, bottom: 40 } }, option));
    window.addEventListener("resize", function () { chart.resize(); });
    el.dataset.drawn = "chart";
    return chart;
  }

  var builders = {
    orders: function (d) {
      var byDay = {};
      d.rows.forEach(function (r) { var k = r.time.slice(0, 10); byDay[k] = (byDay[k] || 0) + Number(r.amount); });
      var days = Object.keys(byDay).sort();
      if (!days.length) return empty();
      draw({ xAxis: { type: "category", data: days }, yAxis: { type: "value", name: "¥" },
             series: [{ name: el.dataset.total, type: "bar", data: days.map(function (k) {
               var v = Math.round(byDay[k] * 100) / 100;
               return { value: v, itemStyle: { color: v < 0 ? "#e0632c" : "#1664c0" } };
             }) }] });
    },
    income: function (d) {
      if (!d.rows.length) return empty();
      var parts = ["electricity", "water"].concat(d.charge_codes || [], ["apportion", "other"]);
      var any = d.rows.some(function (r) { return Number(r.income.total) || Number(r.cash_in.total); });
      if (!any) return empty();
      var x = d.rows.map(function (r) { return r.period; });
      var series = parts.map(function (p) {
        return { name: labels[p] || p, type: "bar", stack: "income",
                 data: d.rows.map(function (r) { return num(r.income[p]); }) };
      });
      series.push({ name: labels.cash_in, type: "line", data: d.rows.map(function (r) { return num(r.cash_in.total); }) });
      draw({ xAxis: { type: "category", data: x }, yAxis: { type: "value", name: "¥" }, series: series });
    },
    energy: function (d) {
      var rows = d.rows.slice().sort(function (a, b) { return Number(b.total) - Number(a.total); }).slice(0, 40);
      if (!rows.length) return empty();
      var x = rows.map(function (r) { return r.room || "—"; });
      var series = d.utility === "water"
        ? [{ name: labels.total, type: "bar", data: rows.map(function (r) { return num(r.total); }) }]
        : ["sharp", "peak", "flat", "valley"].map(function (p) {
          return { name: labels[p], type: "bar", stack: "q", itemStyle: { color: COLORS[p] },
                   data: rows.map(function (r) { return num(r[p]); }) };
        });
      draw({ xAxis: { type: "category", data: x, axisLabel: { rotate: x.length > 12 ? 45 : 0 } },
             yAxis: { type: "value", name: el.dataset.unit || d.unit }, series: series });
    },
    yoy: function (d) {
      if (!d.rows.length) return empty();
      var pick = document.getElementById("chart-key");
      var render = function (chart) {
        var key = pick ? pick.value : d.rows[0].key;
        var rows = d.rows.filter(function (r) { return r.key === key; });
        var option = { xAxis: { type: "category", data: rows.map(function (r) { return r.month.slice(5); }) },
                       yAxis: [{ type: "value", name: d.unit }, { type: "value", name: "%" }],
                       series: [{ name: labels.now, type: "bar", data: rows.map(function (r) { return num(r.usage); }) },
                                { name: labels.last, type: "bar", data: rows.map(function (r) { return num(r.usage_last_year); }) },
                                { name: labels.pct, type: "line", yAxisIndex: 1, connectNulls: false,
                                  data: rows.map(function (r) { return num(r.change_pct); }) }] };
        if (chart) { chart.setOption(option); return chart; }
        return draw(option);
      };
      var chart = render(null);
      if (pick && chart) pick.addEventListener("change", function () { render(chart); });
    },
    meter: function (d) {
      if (!d.rows.some(function (r) { return r.usage !== null || r.flag === "anomaly"; })) return empty();
      var x = d.rows.map(function (r) { return r.period; });
      var top = Math.max.apply(null, d.rows.map(function (r) { return Math.abs(Number(r.usage) || 0); }));
      // a gap is a short grey bar at the foot of its period (the simple ECharts build has bars and lines only)
      draw({ xAxis: { type: "category", data: x }, yAxis: { type: "value", name: d.unit },
             series: [{ name: labels.usage, type: "bar", data: d.rows.map(function (r) {
                        return { value: num(r.usage), itemStyle: { color: r.flag === "anomaly" ? "#cf2e2e" : "#1664c0" } };
                      }) },
                      { name: labels.gap, type: "bar", barGap: "-100%", itemStyle: { color: "#c3cbd4" },
                        data: d.rows.map(function (r) { return r.flag === "gap" ? (top || 1) * 0.03 : null; }) }] });
    }
  };

  fetch(el.dataset.src, { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
    .then(function (d) { builders[el.dataset.kind](d); })
    .catch(function () { empty(); el.dataset.drawn = "failed"; });
})();
