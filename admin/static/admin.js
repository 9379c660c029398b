// meterpay admin: confirmation dialogs, monitor live refresh and search, presets, usage chart.
(function () {
  "use strict";
  var csrf = document.body.dataset.csrf;

  // Forms that move money or cut supply ask first; the server also refuses without confirm=yes.
  function fill(text, form) {
    return text.replace(/\{(\w+)\}/g, function (_, name) {
      var el = form.elements[name];
      return el ? el.value : "";
    });
  }
  function askThenSubmit(form, text) {
    var dlg = document.getElementById("confirm-dialog");
    dlg.querySelector(".msg").textContent = text;
    dlg.returnValue = "";
    dlg.onclose = function () {
      if (dlg.returnValue !== "ok") return;
      var c = document.createElement("input");
      c.type = "hidden"; c.name = "confirm"; c.value = "yes";
      form.appendChild(c);
      form.submit();
    };
    dlg.showModal();
  }
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var text = form.dataset.confirm;
    if (!text && form.dataset.confirmIfBalance) {
      var ob = form.elements.opening_balance;
      if (ob && ob.value && Number(ob.value) !== 0) text = form.dataset.confirmIfBalance;
    }
    if (!text || form.querySelector("input[name=confirm]")) return;
    ev.preventDefault();
    if (!form.reportValidity()) return;
    askThenSubmit(form, fill(text, form));
  });

  // htmx requests carry the CSRF token too.
  document.addEventListener("htmx:configRequest", function (ev) { ev.detail.headers["X-CSRF-Token"] = csrf; });

  // --- room monitor ----------------------------------------------------------------
  var grid = document.getElementById("grid");
  if (grid) {
    var labels = JSON.parse(grid.dataset.labels);
    var filters = document.getElementById("filters");
    filters.querySelectorAll("select").forEach(function (s) {
      s.addEventListener("change", function () { filters.submit(); });
    });
    var search = document.getElementById("search");
    var shown = document.getElementById("shown");
    var cells = grid.getElementsByClassName("c");
    function applySearch() {
      var q = search.value.trim().toLowerCase(), n = 0;
      for (var i = 0; i < cells.length; i++) {
        var c = cells[i];
        var hit = !q || (c.firstChild.textContent + " " + c.title).toLowerCase().indexOf(q) !== -1;
        cells[i].classList.toggle("hidden", !hit);
        if (hit) n++;
      }
      shown.textContent = n;
    }
    var timer;
    search.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(applySearch, 120); });

    var live = document.querySelector(".summary .live");
    var liveState = document.getElementById("live-state");
    function money(fen) {
      if (fen === null) return "";
      var neg = fen < 0, a = Math.abs(fen);
      return (neg ? "-" : "") + Math.floor(a / 100) + "." + String(a % 100).padStart(2, "0");
    }
    function refresh() {
      fetch(grid.dataset.json, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) {
          if (r.status === 401) { location.reload(); throw new Error("signed out"); }  // back to sign-in
          if (!r.ok) throw new Error(r.status);
          return r.json();
        })
        .then(function (data) {
          Object.keys(data.summary).forEach(function (k) {
            var el = document.querySelector('#summary [data-k="' + k + '"]');
            if (el) el.textContent = data.summary[k];
          });
          Object.keys(data.rooms).forEach(function (id) {
            var el = document.getElementById("r" + id);
            if (!el) return;
            var v = data.rooms[id];
            var cls = "c f-" + v[0] + " o-" + v[1] + " s-" + v[2] + (v[5] ? " x-1" : "") +  // x-1: relay/valve mismatch
              (el.classList.contains("hidden") ? " hidden" : "");
            if (el.className !== cls) el.className = cls;
            var bal = el.querySelector(".bal");
            bal.textContent = money(v[3]);
            if (v[4]) {  // a prepaid meter's remaining amount: when the meter reported it
              var rd = document.createElement("small");
              rd.className = "rd";
              rd.textContent = " " + (labels.read || "") + " " + v[4];
              bal.appendChild(rd);
            }
            el.querySelector(".st").textContent = labels.fee[v[0]] || v[0];
          });
          live.classList.remove("fail");
          liveState.textContent = liveState.dataset.ok;
          document.getElementById("live-time").textContent = " " + new Date().toLocaleTimeString();
        })
        .catch(function () { live.classList.add("fail"); liveState.textContent = liveState.dataset.fail; });
    }
    setInterval(refresh, Number(grid.dataset.refresh || 10) * 1000);
  }

  // --- presets fill the opening form ------------------------------------------------
  document.querySelectorAll("button.preset").forEach(function (b) {
    b.addEventListener("click", function () {
      var f = document.getElementById("open-form");
      document.getElementById("preset-field").value = b.dataset.preset;
      if (b.dataset.tariff) f.elements.tariff.value = b.dataset.tariff;
      if (b.dataset.waterTariff) f.elements.water_tariff.value = b.dataset.waterTariff;
      f.elements.billing_mode.value = b.dataset.billing;
      f.elements.opening_balance.value = b.dataset.opening === "0.00" ? "" : b.dataset.opening;
      JSON.parse(b.dataset.levels || "[]").forEach(function (v, i) { f.elements["level" + (i + 1)].value = v; });
      document.querySelectorAll("button.preset").forEach(function (o) { o.classList.toggle("on", o === b); });
      f.elements.tenant.focus();
    });
  });

  // --- room page: while a command is open, follow it and reload once the meter has answered --------
  var cmdTable = document.getElementById("commands");
  if (cmdTable && Number(cmdTable.dataset.open) > 0) {
    var follow = setInterval(function () {
      fetch(cmdTable.dataset.src, { credentials: "same-origin" }).then(function (r) { return r.json(); })
        .then(function (d) { if (d.open === 0) { clearInterval(follow); location.reload(); } });
    }, 2000);
  }

  // --- tariff examples ---------------------------------------------------------------
  document.querySelectorAll("button.example").forEach(function (b) {
    b.addEventListener("click", function () { document.getElementById("spec").value = b.dataset.spec; });
  });

  // --- 30-day usage chart -------------------------------------------------------------
  var chartEl = document.getElementById("usage-chart");
  if (chartEl) {
    fetch(chartEl.dataset.src, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (d) {
      var any = d.series.some(function (s) { return s.data.some(function (v) { return v !== null; }); });
      if (!window.echarts || !d.series.length || !any) {
        chartEl.style.height = "auto";
        chartEl.innerHTML = '<p class="muted">' + chartEl.dataset.empty + "</p>";
        return;
      }
      var chart = echarts.init(chartEl);
      chart.setOption({
        animation: false,
        tooltip: { trigger: "axis" },
        legend: { top: 0 },
        grid: { left: 50, right: 50, top: 30, bottom: 30 },
        xAxis: { type: "category", data: d.days },
        yAxis: [{ type: "value", name: "kWh" }, { type: "value", name: "m³" }],
        series: d.series.map(function (s) {
          return { name: s.name + " (" + s.unit + ")", type: s.kind === "water" ? "line" : "bar",
                   yAxisIndex: s.kind === "water" ? 1 : 0, data: s.data,
                   itemStyle: { color: s.kind === "water" ? "#2a8fd6" : "#f0903a" } };
        })
      });
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }
})();
