// ganforge lab: the page side. Plain canvas 2D, no framework. Talks to /ws (see ganforge/lab/protocol.py).
// window.ganforgeLab exposes the state (last frame, loss history) for browser tests.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const lab = { frame: null, frames: 0, history: {}, drawn: [], components: null, ws: null, maxPoints: 100000 };
  window.ganforgeLab = lab;

  // ------------------------------------------------------------------------------------------ status, errors
  function setState(state, text) {
    document.body.dataset.state = state;
    $("status").textContent = text || state;
  }
  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
  }
  function clearError() { $("error").hidden = true; $("error").textContent = ""; }

  function send(msg) {
    if (!lab.ws || lab.ws.readyState !== WebSocket.OPEN) { showError("not connected to the lab server"); return; }
    lab.ws.send(JSON.stringify(msg));
  }

  // ------------------------------------------------------------------------------------------ option forms
  function optionInput(opt, value) {
    const label = document.createElement("label");
    label.textContent = opt.name + " ";
    let input;
    if (opt.type === "bool" && opt.default === null) {
      input = document.createElement("select");
      for (const v of ["", "true", "false"]) {
        const o = document.createElement("option");
        o.value = v; o.textContent = v === "" ? "auto" : v; input.appendChild(o);
      }
      input.value = value === null || value === undefined ? "" : String(value);
    } else if (opt.type === "bool") {
      input = document.createElement("input");
      input.type = "checkbox"; input.checked = Boolean(value);
    } else {
      input = document.createElement("input");
      input.type = opt.type === "str" ? "text" : "number";
      if (opt.type === "float") input.step = "any";
      input.value = value === null || value === undefined ? "" : value;
    }
    input.dataset.option = opt.name;
    input.dataset.type = opt.type;
    input.dataset.nullable = opt.default === null ? "1" : "";
    label.appendChild(input);
    return label;
  }

  function renderOptions(container, description, values) {
    container.innerHTML = "";
    if (!description) return;
    for (const opt of description.options) {
      const v = values && opt.name in values ? values[opt.name] : opt.default;
      container.appendChild(optionInput(opt, v));
    }
  }

  function readOptions(container) {
    const out = {};
    for (const input of container.querySelectorAll("[data-option]")) {
      const type = input.dataset.type, name = input.dataset.option;
      if (input.tagName === "SELECT" && type === "bool") {
        if (input.value !== "") out[name] = input.value === "true";
      } else if (type === "bool") {
        out[name] = input.checked;
      } else if (input.value === "") {
        if (!input.dataset.nullable) out[name] = null;
      } else if (type === "int") {
        out[name] = Number.isInteger(Number(input.value)) ? Number(input.value) : input.value;
      } else if (type === "float") {
        out[name] = Number(input.value);
      } else {
        out[name] = input.value;
      }
    }
    return out;
  }

  function fillSelect(select, items, chosen) {
    select.innerHTML = "";
    for (const item of items) {
      const o = document.createElement("option");
      o.value = item.name; o.textContent = item.name; o.title = item.description || "";
      select.appendChild(o);
    }
    if (chosen) select.value = chosen;
  }

  function byName(list, name) { return list.find((c) => c.name === name); }

  function renderRegularizers(list) {
    const box = $("reg-list");
    box.innerHTML = "";
    for (const reg of list) {
      const row = document.createElement("div");
      const label = document.createElement("label");
      const check = document.createElement("input");
      check.type = "checkbox"; check.id = "reg-" + reg.name; check.dataset.reg = reg.name;
      label.appendChild(check);
      label.appendChild(document.createTextNode(" " + reg.name));
      label.title = reg.description;
      const opts = document.createElement("div");
      opts.className = "reg-options"; opts.hidden = true;
      renderOptions(opts, reg, null);
      check.addEventListener("change", () => { opts.hidden = !check.checked; });
      row.appendChild(label); row.appendChild(opts);
      box.appendChild(row);
    }
  }

  function setupControls(c) {
    lab.components = c;
    lab.maxPoints = c.limits.max_points;
    const d = c.defaults;
    fillSelect($("data-select"), c.data, d.data.name);
    fillSelect($("arch-select"), c.architectures, d.model.name);
    fillSelect($("loss-select"), c.losses, d.loss.name);
    fillSelect($("aug-select"), c.augmentations, d.augment.name);
    $("optimizer-name").textContent = c.optimizer.name;
    const refresh = () => {
      renderOptions($("arch-options"), byName(c.architectures, $("arch-select").value), d.model);
      renderOptions($("loss-options"), byName(c.losses, $("loss-select").value), null);
      renderOptions($("aug-options"), byName(c.augmentations, $("aug-select").value), null);
      $("draw-tools").hidden = $("data-select").value !== "drawn";
    };
    for (const id of ["arch-select", "loss-select", "aug-select", "data-select"]) {
      $(id).addEventListener("change", refresh);
    }
    refresh();
    renderRegularizers(c.regularizers);
    $("g-lr").value = d.optim.g_lr; $("d-lr").value = d.optim.d_lr;
    $("beta1").value = d.optim.beta1; $("beta2").value = d.optim.beta2; $("d-steps").value = d.optim.d_steps;
    $("batch-size").value = d.batch_size; $("seed").value = d.seed; $("steps-per-frame").value = d.steps_per_frame;
    $("data-noise").value = d.data.noise; $("data-n").value = d.data.n;
  }

  function readSettings() {
    const num = (id) => Number($(id).value);
    const regs = [];
    for (const check of $("reg-list").querySelectorAll("input[data-reg]")) {
      if (!check.checked) continue;
      regs.push({ name: check.dataset.reg, ...readOptions(check.closest("div").querySelector(".reg-options")) });
    }
    return {
      data: { name: $("data-select").value, noise: num("data-noise"), n: num("data-n") },
      model: { name: $("arch-select").value, ...readOptions($("arch-options")) },
      loss: { name: $("loss-select").value, ...readOptions($("loss-options")) },
      regularizers: regs,
      augment: { name: $("aug-select").value, ...readOptions($("aug-options")) },
      optim: {
        g_lr: num("g-lr"), d_lr: num("d-lr"), beta1: num("beta1"), beta2: num("beta2"), d_steps: num("d-steps"),
      },
      batch_size: num("batch-size"), seed: num("seed"), steps_per_frame: num("steps-per-frame"),
    };
  }

  // ------------------------------------------------------------------------------------------ drawing
  const plot = $("plot"), pctx = plot.getContext("2d");
  const heat = document.createElement("canvas");
  function extent() { return lab.frame ? lab.frame.extent : 1.5; }
  function toPx(x, y) {
    const e = extent();
    return [(x / e * 0.5 + 0.5) * plot.width, (0.5 - y / e * 0.5) * plot.height];
  }
  function fromPx(px, py) {
    const e = extent();
    return [(px / plot.width - 0.5) * 2 * e, (0.5 - py / plot.height) * 2 * e];
  }

  function drawHeatmap(h) {
    heat.width = h.size; heat.height = h.size;
    const hctx = heat.getContext("2d");
    const img = hctx.createImageData(h.size, h.size);
    for (let i = 0; i < h.values.length; i++) {
      const p = 1 / (1 + Math.exp(-h.values[i]));  // sigmoid(D logit)
      img.data[4 * i] = Math.round(155 * (1 - p) + 60 * p);
      img.data[4 * i + 1] = Math.round(90 * (1 - p) + 170 * p);
      img.data[4 * i + 2] = Math.round(200 * (1 - p) + 90 * p);
      img.data[4 * i + 3] = 110;
    }
    hctx.putImageData(img, 0, 0);
    pctx.imageSmoothingEnabled = true;
    pctx.drawImage(heat, 0, 0, plot.width, plot.height);
  }

  function dots(points, color, r) {
    pctx.fillStyle = color;
    for (const [x, y] of points) {
      const [px, py] = toPx(x, y);
      pctx.fillRect(px - r, py - r, 2 * r, 2 * r);
    }
  }

  function drawManifold(m) {
    pctx.strokeStyle = "rgba(120, 40, 140, 0.45)";
    pctx.lineWidth = 1;
    const at = (r, c) => toPx(...m.points[r * m.cols + c]);
    for (let r = 0; r < m.rows; r++) {
      pctx.beginPath();
      for (let c = 0; c < m.cols; c++) { const [x, y] = at(r, c); c ? pctx.lineTo(x, y) : pctx.moveTo(x, y); }
      pctx.stroke();
    }
    for (let c = 0; c < m.cols && m.rows > 1; c++) {
      pctx.beginPath();
      for (let r = 0; r < m.rows; r++) { const [x, y] = at(r, c); r ? pctx.lineTo(x, y) : pctx.moveTo(x, y); }
      pctx.stroke();
    }
  }

  function drawArrows(arrows) {
    let longest = 1e-12;
    for (const a of arrows) longest = Math.max(longest, Math.hypot(a[2], a[3]));
    const scale = 0.12 * extent() / longest;  // the longest arrow spans 6% of the plot
    pctx.strokeStyle = "rgba(230, 81, 0, 0.85)";
    pctx.lineWidth = 1.2;
    for (const [x, y, dx, dy] of arrows) {
      const [x0, y0] = toPx(x, y), [x1, y1] = toPx(x + dx * scale, y + dy * scale);
      const ang = Math.atan2(y1 - y0, x1 - x0);
      pctx.beginPath();
      pctx.moveTo(x0, y0); pctx.lineTo(x1, y1);
      pctx.lineTo(x1 - 4 * Math.cos(ang - 0.5), y1 - 4 * Math.sin(ang - 0.5));
      pctx.moveTo(x1, y1);
      pctx.lineTo(x1 - 4 * Math.cos(ang + 0.5), y1 - 4 * Math.sin(ang + 0.5));
      pctx.stroke();
    }
  }

  function drawPlot() {
    pctx.clearRect(0, 0, plot.width, plot.height);
    const f = lab.frame;
    if (f) {
      if ($("show-heatmap").checked) drawHeatmap(f.heatmap);
      if ($("show-manifold").checked) drawManifold(f.manifold);
      if ($("show-real").checked) dots(f.real, "rgba(38, 50, 56, 0.75)", 1.5);
      if ($("show-fake").checked) dots(f.fake, "rgba(198, 40, 40, 0.8)", 1.5);
      if ($("show-arrows").checked) drawArrows(f.arrows);
    }
    if ($("data-select").value === "drawn") dots(lab.drawn, "rgba(21, 101, 192, 0.9)", 3);
  }

  // ------------------------------------------------------------------------------------------ losses, metrics
  const lossCanvas = $("loss-plot"), lctx = lossCanvas.getContext("2d");
  const COLORS = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f"];

  function recordLosses(f) {
    if (!f.losses) return;
    for (const [k, v] of Object.entries(f.losses)) {
      if (v === null) continue;
      (lab.history[k] = lab.history[k] || []).push([f.step + f.d_pending / 10, v]);
      if (lab.history[k].length > 2000) lab.history[k].splice(0, lab.history[k].length - 2000);
    }
  }

  function drawLosses() {
    const W = lossCanvas.width, H = lossCanvas.height, pad = 28;
    lctx.clearRect(0, 0, W, H);
    const series = Object.entries(lab.history);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const [, pts] of series) for (const [x, y] of pts) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    if (!series.length || !isFinite(x0)) return;
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y1 += 0.5; y0 -= 0.5; }
    const sx = (x) => pad + (x - x0) / (x1 - x0) * (W - pad - 6);
    const sy = (y) => H - pad + 6 - (y - y0) / (y1 - y0) * (H - pad);
    lctx.strokeStyle = "#999"; lctx.strokeRect(pad, 4, W - pad - 6, H - pad);
    lctx.fillStyle = "#444"; lctx.font = "10px sans-serif";
    lctx.fillText(y1.toPrecision(3), 2, 12); lctx.fillText(y0.toPrecision(3), 2, H - pad + 4);
    lctx.fillText("step " + Math.round(x1), W - 60, H - 8);
    series.forEach(([name, pts], i) => {
      lctx.strokeStyle = COLORS[i % COLORS.length];
      lctx.beginPath();
      pts.forEach(([x, y], j) => (j ? lctx.lineTo(sx(x), sy(y)) : lctx.moveTo(sx(x), sy(y))));
      lctx.stroke();
      lctx.fillStyle = COLORS[i % COLORS.length];
      lctx.fillText(name, pad + 6 + 70 * i, H - 8);
    });
  }

  function showNumbers(f) {
    $("step-counter").textContent = f.step;
    $("d-updates").textContent = f.d_updates;
    $("g-updates").textContent = f.g_updates;
    $("loss-values").textContent = Object.entries(f.losses || {})
      .map(([k, v]) => `${k} = ${v === null ? "non-finite" : v.toFixed(4)}`).join("\n");
    $("modes").textContent = f.modes
      ? `modes ${f.modes.modes}\nhigh-quality fraction ${f.modes.hq_frac.toFixed(3)}\n` +
        `reverse KL ${f.modes.kl.toFixed(3)}`
      : "— (this data set has no modes)";
  }

  function onFrame(f) {
    lab.frame = f;
    lab.frames += 1;
    plot.dataset.frames = String(lab.frames);
    plot.dataset.step = String(f.step);
    if (f.action === "config" || f.action === "reset") lab.history = {};
    recordLosses(f);
    showNumbers(f);
    drawPlot();
    drawLosses();
    setState(f.playing ? "playing" : "ready", f.playing ? "training…" : "ready");
  }

  // ------------------------------------------------------------------------------------------ socket
  const HANDLERS = {
    hello: () => { setState("ready", "connected"); send({ type: "config", config: readSettings() }); },
    frame: onFrame,
    error: (m) => { showError(m.message); if (document.body.dataset.state === "playing") setState("ready", "paused"); },
    paused: () => setState("ready", "paused"),
    points: (m) => { $("points-count").textContent = `${m.count} points sent`; },
    saved: (m) => { $("saved-path").textContent = `saved step ${m.step} to ${m.path}\nresume: ${m.resume}`; },
  };

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    lab.ws = ws;
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      const handler = HANDLERS[msg.type];
      if (handler) handler(msg);
    };
    ws.onclose = () => setState("closed", "disconnected (reload the page)");
  }

  // ------------------------------------------------------------------------------------------ wiring
  function wire() {
    const simple = { "btn-play": "play", "btn-pause": "pause", "btn-step": "step", "btn-d-step": "d-step",
      "btn-g-step": "g-step", "btn-reset": "reset" };
    for (const [id, type] of Object.entries(simple)) {
      $(id).addEventListener("click", () => { clearError(); send({ type }); });
    }
    $("btn-apply").addEventListener("click", () => { clearError(); send({ type: "config", config: readSettings() }); });
    $("btn-save").addEventListener("click", () => {
      clearError();
      send({ type: "save", name: $("save-name").value });
    });
    plot.addEventListener("click", (ev) => {
      if ($("data-select").value !== "drawn") return;
      // offsetX/Y: from the canvas's padding edge, inside its border (the bounding rect would include the border)
      const [x, y] = fromPx(ev.offsetX * plot.width / plot.clientWidth, ev.offsetY * plot.height / plot.clientHeight);
      lab.drawn.push([Number(x.toFixed(4)), Number(y.toFixed(4))]);
      $("points-count").textContent = `${lab.drawn.length} points drawn`;
      drawPlot();
    });
    $("btn-clear-points").addEventListener("click", () => {
      lab.drawn = [];
      $("points-count").textContent = "0 points drawn";
      drawPlot();
    });
    $("btn-use-points").addEventListener("click", () => {
      clearError();
      if (!lab.drawn.length) { showError("draw some points first: click on the plot"); return; }
      if (lab.drawn.length > lab.maxPoints) { showError(`at most ${lab.maxPoints} points`); return; }
      send({ type: "points", points: lab.drawn });
      send({ type: "config", config: readSettings() });
    });
    $("csv-file").addEventListener("change", (ev) => {
      const file = ev.target.files[0];
      if (!file) return;
      file.text().then((text) => {
        clearError();
        const rows = text.split(/\r?\n/).filter((l) => l.trim()).length;
        if (rows > lab.maxPoints + 1) {
          showError(`${file.name}: ${rows} rows; at most ${lab.maxPoints} points`);
          return;
        }
        send({ type: "points", csv: text });
        send({ type: "config", config: readSettings() });
      });
    });
    for (const id of ["show-heatmap", "show-real", "show-fake", "show-manifold", "show-arrows"]) {
      $(id).addEventListener("change", drawPlot);
    }
  }

  fetch("/api/components")
    .then((r) => r.json())
    .then((c) => { setupControls(c); wire(); connect(); })
    .catch((e) => showError("could not load /api/components: " + e));
})();
