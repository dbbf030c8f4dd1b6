// The tfx serve page: model card, image upload, one result card per image.
// Every string from the server or from a file (names, messages, warnings) is inserted as
// text (textContent / text nodes), never as HTML.
"use strict";

const state = { token: null, model: null, chosen: [] };
const BROWSER_IMAGES = ["image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"];
const HEATMAP_PREFIX = "data:image/png;base64,";

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== undefined && child !== null) node.append(child);  // strings become text
  }
  return node;
}

function byId(id) { return document.getElementById(id); }

function plain(markdown) { return String(markdown).replace(/[`*]/g, ""); }

function number(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "n/a";
}

function setStatus(message) { byId("status").textContent = message; }

function authHeaders() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options, headers: { ...(options.headers || {}), ...authHeaders() },
    cache: "no-store", credentials: "omit",
  });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  return { response, body };
}

// ---- model card -------------------------------------------------------------------------

async function loadModel() {
  const { response, body } = await api("/v1/model");
  if (response.status === 401) {
    byId("token-box").hidden = false;
    byId("model-name").textContent = "access token needed";
    setStatus("This server requires an access token: enter it above.");
    byId("token").focus();
    return;
  }
  if (!response.ok || !body) {
    setStatus("Could not load the model's facts (" + response.status + ").");
    return;
  }
  state.model = body;
  byId("token-box").hidden = true;
  renderModel(body);
}

function metricValue(entry) {
  if (entry && typeof entry === "object") {
    const ci = typeof entry.ci_low === "number" && Number.isFinite(entry.ci_low)
      ? number(entry.ci_low) + " to " + number(entry.ci_high) : "not computed";
    return [number(entry.value), ci];
  }
  return [number(entry, 4), "not computed"];
}

function metricsSection(metrics) {
  const section = el("section", { class: "card-section" });
  if (!metrics || !metrics.values) {
    section.append(el("h3", { text: "Metrics" }), el("p", { text: "None recorded." }));
    return section;
  }
  const heading = metrics.split === "test" ? "Test metrics"
    : metrics.split === "val" ? "Validation metrics (not a test result)"
      : "Metrics on the " + metrics.split + " split";
  section.append(el("h3", { text: heading }));
  let source = "Source: " + metrics.source;
  if (metrics.n) source += "; " + metrics.n + " images";
  if (metrics.bootstrap) {
    source += "; 95% CIs from " + metrics.bootstrap.n_boot + " bootstrap resamples";
  }
  section.append(el("p", { class: "hint", text: source }));
  const table = el("table", { class: "metrics" },
    el("caption", { class: "visually-hidden", text: heading }),
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "metric" }),
      el("th", { scope: "col", text: "value" }), el("th", { scope: "col", text: "95% CI" }))));
  const rows = el("tbody");
  for (const [name, entry] of Object.entries(metrics.values)) {
    const [value, ci] = metricValue(entry);
    rows.append(el("tr", {}, el("th", { scope: "row", text: name }), el("td", { text: value }),
      el("td", { text: ci })));
  }
  table.append(rows);
  section.append(table);
  return section;
}

function operatingPoints(points) {
  // {question: {name: {threshold, target_sensitivity, chosen_on, validation, test}}}
  if (!points || !Object.keys(points).length) return null;
  const list = el("ul");
  for (const [question, named] of Object.entries(points)) {
    for (const [name, point] of Object.entries(named || {})) {
      if (!point || typeof point.threshold !== "number") continue;
      const test = point.test || {};
      let text = question + ", " + name + ": threshold " + number(point.threshold, 4);
      if (typeof point.target_sensitivity === "number") {
        text += ", chosen on validation for " + Math.round(100 * point.target_sensitivity)
          + "% sensitivity";
      }
      if (test.sensitivity) {
        const sens = metricValue(test.sensitivity), spec = metricValue(test.specificity);
        text += "; on " + (test.split || "test") + ": sensitivity " + sens[0] + " (95% CI "
          + sens[1] + "), specificity " + spec[0] + " (95% CI " + spec[1] + ")";
      }
      list.append(el("li", { text }));
    }
  }
  return list.children.length
    ? el("section", { class: "card-section" }, el("h3", { text: "Operating points" }), list)
    : null;
}

function decisionFacts(decision) {
  const pairs = [["Prediction rule", decision.predicted_rule],
    ["Referable rule", decision.referable_rule]];
  for (const [question, t] of Object.entries(decision.thresholds || {})) {
    pairs.push(["Threshold: " + question, number(t.threshold, 4) + " (" + t.source + ")"]);
  }
  return pairs;
}

function facts(pairs) {
  const list = el("dl", { class: "facts" });
  for (const [term, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    list.append(el("dt", { text: term }), el("dd", { text: String(value) }));
  }
  return list;
}

function renderModel(model) {
  byId("model-name").textContent = model.model;
  document.title = "tfx serve: " + model.model;
  const banner = byId("synthetic-banner");
  if (model.synthetic) {
    banner.replaceChildren(
      el("strong", { text: "Synthetic-data model. " }),
      "It was trained on tfx's built-in synthetic images (" + model.dataset + "), not on real "
      + "photographs: its outputs on real images mean nothing. It demonstrates the pipeline "
      + "only; never use it for a clinical decision.");
    banner.hidden = false;
  }
  const others = (model.warnings || []).filter((w) => !model.synthetic || !/synthetic/.test(w))
    .concat(model.selection_warnings || []);
  if (others.length) {
    byId("model-warnings").replaceChildren(...others.map((w) => el("p", { text: w })));
    byId("model-warnings").hidden = false;
  }
  const accepts = model.accepts || {};
  const types = (accepts.formats || []).join(", ") + (accepts.dicom ? ", DICOM" : "");
  byId("accepts").textContent = "Accepted: " + types + "; up to " + accepts.max_images
    + " images per request, " + Math.round(accepts.max_file_bytes / 1048576) + " MB each.";
  const mimes = BROWSER_IMAGES.concat(["image/tiff", ".tif", ".tiff", ".png", ".jpg", ".jpeg",
    ".bmp", ".webp", ".gif"]);
  if (accepts.dicom) mimes.push(".dcm", "application/dicom");
  byId("files").setAttribute("accept", mimes.join(","));

  const card = model.card || {};
  const data = model.training_data || {};
  const prep = model.preprocessing || {};
  const body = byId("card-body");
  const decision = model.decision || {};
  body.replaceChildren(
    el("section", { class: "card-section" }, el("h3", { text: "Intended use and limits" }),
      el("ul", {}, ...(model.intended_use || []).map((line) => el("li", { text: plain(line) })))),
    el("section", { class: "card-section" }, el("h3", { text: "Model" }), facts([
      ["Architecture", model.architecture], ["Initialisation", card.init],
      ["Precision", model.precision], ["Task", model.task],
      ["Classes", (model.classes || []).join(", ")],
      ...decisionFacts(decision),
      ["Heatmaps", model.heatmaps ? "yes (class-activation map of the explained score)"
        : "no (the model has no heatmap output)"],
      ["Runs on", model.provider],
    ])),
    el("section", { class: "card-section" }, el("h3", { text: "Training data" }), facts([
      ["Dataset", data.name + (data.synthetic ? " (built-in synthetic images)" : "")],
      ["Training images", data.train_images], ["Data seed", data.data_seed],
      ["Input", prep.channels + "x" + prep.image_size + "x" + prep.image_size
        + (prep.step_description ? "; " + prep.step_description
          : prep.step ? ", after the '" + prep.step + "' preprocessing step" : "")],
    ])),
    metricsSection(model.metrics),
  );
  const points = operatingPoints(model.operating_points);
  if (points) body.append(points);
}

// ---- choosing images ----------------------------------------------------------------------

function choose(files) {
  state.chosen = Array.from(files);
  const list = byId("chosen");
  list.replaceChildren(...state.chosen.map((f) => el("li", {
    text: f.name + " (" + Math.max(1, Math.round(f.size / 1024)) + " KB)",
  })));
  setStatus(state.chosen.length ? state.chosen.length + " image(s) chosen; press Predict."
    : "");
}

function setUpDropZone() {
  const zone = byId("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (event.dataTransfer && event.dataTransfer.files.length) choose(event.dataTransfer.files);
  });
  byId("files").addEventListener("change", (event) => choose(event.target.files));
}

// ---- results -------------------------------------------------------------------------------

function decisionOf(record, label) {
  // The threshold a result was decided at and its source (per label for multi-label).
  let value = record.threshold, source = record.threshold_source;
  if (value && typeof value === "object") value = value[label];
  if (source && typeof source === "object") source = source[label];
  if (typeof value !== "number") {
    const stored = ((state.model && state.model.decision) || {}).thresholds || {};
    const first = stored[label] || Object.values(stored)[0] || {};
    value = first.threshold;
    source = source || first.source;
  }
  return { value, source: source || "not stated" };
}

function predictedText(predicted) {
  if (Array.isArray(predicted)) return predicted.length ? predicted.join(", ") : "none";
  return predicted === undefined || predicted === null ? "n/a" : String(predicted);
}

function probabilityTable(record) {
  const perLabel = record.threshold && typeof record.threshold === "object";
  const rows = el("tbody");
  for (const [name, p] of Object.entries(record.probabilities || {})) {
    const cells = [el("th", { scope: "row", text: name }),
      el("td", {}, el("meter", { min: 0, max: 1, value: p, "aria-label": name }), " ",
        number(p))];
    if (perLabel) {
      const cut = decisionOf(record, name);
      cells.push(el("td", { text: number(cut.value) }),
        el("td", { text: p >= cut.value ? "positive" : "negative" }));
    }
    rows.append(el("tr", {}, ...cells));
  }
  const head = [el("th", { scope: "col", text: "class" }),
    el("th", { scope: "col", text: "probability" })];
  if (perLabel) {
    head.push(el("th", { scope: "col", text: "threshold" }),
      el("th", { scope: "col", text: "decision" }));
  }
  return el("table", { class: "probabilities" }, el("thead", {}, el("tr", {}, ...head)), rows);
}

function heatmapSlot(record) {
  const slot = el("figure", { class: "heatmap-slot", "data-testid": "heatmap-slot" });
  const heatmap = record.heatmap && typeof record.heatmap.png === "string"
    ? record.heatmap.png : null;
  if (heatmap && heatmap.startsWith(HEATMAP_PREFIX)) {
    slot.dataset.state = "present";
    slot.classList.add("heatmap-present");
    slot.append(el("img", { src: heatmap, alt: "Heatmap of " + record.image + " for the "
      + record.heatmap.target + " (score " + number(record.heatmap.score) + ")" }),
    el("figcaption", { text: "Heatmap of the " + record.heatmap.target }));
  } else {
    slot.dataset.state = "absent";
    slot.append(el("div", { class: "heatmap-empty", text: "No heatmap" }),
      el("figcaption", { text: "Heatmap: not available (the model has no class-activation "
        + "output; re-export it with a tfx that adds one)" }));
  }
  return slot;
}

function photoFigure(record, file) {
  const figure = el("figure", { class: "photo" });
  if (file && BROWSER_IMAGES.includes(file.type)) {
    const url = URL.createObjectURL(file);  // the user's own file, shown from memory
    const img = el("img", { src: url, alt: "Uploaded image " + record.image });
    img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
    figure.append(img);
  } else {
    figure.append(el("div", { class: "heatmap-empty", text: "No preview for this file type" }));
  }
  figure.append(el("figcaption", { text: "Image" }));
  return figure;
}

function referableBlock(record) {
  if (typeof record.referable_probability !== "number") return null;
  const decision = decisionOf(record);
  const referable = record.referable === true;
  const block = el("div", { class: "referable " + (referable ? "positive" : "negative") },
    el("p", {}, el("strong", { text: "Referable: " + (referable ? "yes" : "no") }),
      " (probability " + number(record.referable_probability) + " "
      + (record.referable_probability >= decision.value ? "≥" : "<") + " threshold "
      + number(decision.value) + ")"),
    el("p", { class: "hint", text: "Threshold source: " + decision.source }));
  if (record.note) block.append(el("p", { class: "note", text: "Note: " + record.note }));
  return block;
}

function rulesText(record) {
  const rules = [record.predicted_rule && "prediction: " + record.predicted_rule,
    record.referable_rule && "referable: " + record.referable_rule].filter(Boolean);
  return rules.length ? "Rules: " + rules.join("; ") : null;
}

function recordForDisplay(record) {
  const copy = { ...record };
  if (copy.heatmap && typeof copy.heatmap.png === "string") {
    copy.heatmap = { ...copy.heatmap,
      png: copy.heatmap.png.slice(0, 30) + "… (" + copy.heatmap.png.length + " characters)" };
  }
  return JSON.stringify(copy, null, 2);
}

function resultCard(record, file) {
  const item = el("li", { class: "result", "data-testid": "result" });
  item.append(el("h3", { class: "result-name", text: record.image }));
  const figures = el("div", { class: "figures" }, photoFigure(record, file));
  if (record.error) {
    item.append(figures, el("p", { class: "error", role: "alert",
      text: "No prediction: " + record.error }));
    return item;
  }
  figures.append(heatmapSlot(record));
  const body = el("div", { class: "result-body" },
    el("p", { class: "prediction" }, "Prediction: ",
      el("strong", { "data-testid": "prediction", text: predictedText(record.predicted) })));
  if (typeof record.threshold === "number" && typeof record.referable_probability !== "number") {
    const decision = decisionOf(record);  // binary: the positive class at its threshold
    body.append(el("p", { class: "hint", text: "Positive at probability ≥ "
      + number(decision.value) + " (" + decision.source + ")" }));
  } else if (record.threshold && typeof record.threshold === "object") {
    const sources = [...new Set(Object.values(record.threshold_source || {}))];
    body.append(el("p", { class: "hint", text: "Each finding is positive at its own threshold ("
      + sources.join("; ") + ")" }));
  }
  const referable = referableBlock(record);
  if (referable) body.append(referable);
  const rules = rulesText(record);
  if (rules) body.append(el("p", { class: "hint", text: rules }));
  body.append(probabilityTable(record));
  const warnings = record.warnings || [];
  if (warnings.length) {
    body.append(el("div", { class: "warnings", role: "note" },
      el("h4", { text: "Warnings" }),
      el("ul", {}, ...warnings.map((w) => el("li", { text: w })))));
  }
  body.append(el("details", {}, el("summary", { text: "All fields (as the API returns them)" }),
    el("pre", { text: recordForDisplay(record) })));
  item.append(figures, body);
  return item;
}

async function postImages(files) {
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  for (let attempt = 0; attempt < 4; attempt += 1) {
    const { response, body } = await api(predictPath(), { method: "POST", body: form });
    if (response.status !== 503) return { response, body };
    const wait = Number(response.headers.get("Retry-After") || "1");
    setStatus("The server is busy; retrying in " + wait + " s…");
    await new Promise((resolve) => setTimeout(resolve, 1000 * wait));
  }
  return api(predictPath(), { method: "POST", body: form });
}

function predictPath() {
  return state.model && state.model.heatmaps ? "/v1/predict?heatmaps=true" : "/v1/predict";
}

async function predict(event) {
  event.preventDefault();
  const files = state.chosen;
  if (!files.length) {
    setStatus("Choose one or more images first.");
    byId("files").focus();
    return;
  }
  const accepts = (state.model && state.model.accepts) || {};
  const limit = accepts.max_images || 1;
  const button = byId("submit");
  button.disabled = true;
  let done = 0, failed = 0;
  try {
    // Files over the server's limit are not sent: the server would refuse the whole request.
    const tooLarge = files.filter((f) => accepts.max_file_bytes && f.size > accepts.max_file_bytes);
    for (const file of tooLarge) {
      byId("results").append(resultCard({ image: file.name, error: "larger than the "
        + Math.round(accepts.max_file_bytes / 1048576) + " MB a file may be; not sent." }, null));
      failed += 1;
      done += 1;
    }
    const sent = files.filter((f) => !tooLarge.includes(f));
    for (let start = 0; start < sent.length; start += limit) {
      const batch = sent.slice(start, start + limit);
      setStatus("Predicting " + files.length + " image(s)… " + done + " done.");
      const { response, body } = await postImages(batch);
      if (response.status === 401) {
        byId("token-box").hidden = false;
        setStatus("The access token is missing or wrong: enter it above.");
        return;
      }
      if (!response.ok || !body || !Array.isArray(body.results)) {
        setStatus("The server refused the request (" + response.status + "): "
          + ((body && body.error) || "no reason given"));
        return;
      }
      body.results.forEach((record, index) => {
        byId("results").append(resultCard(record, batch[index]));
        if (record.error) failed += 1;
      });
      done += body.results.length;
    }
    byId("no-results").hidden = byId("results").children.length > 0;
    setStatus(done + " result(s)" + (failed ? ", " + failed + " without a prediction" : "")
      + ".");
    byId("results-heading").focus();
  } catch (error) {
    setStatus("The request failed: " + error.message);
  } finally {
    button.disabled = false;
  }
}

function clearResults() {
  byId("results").replaceChildren();
  byId("no-results").hidden = false;
  setStatus("Results cleared.");
}

function applyToken() {
  const value = byId("token").value.trim();
  state.token = value || null;  // kept in this page's memory only, never stored
  loadModel();
}

document.addEventListener("DOMContentLoaded", () => {
  setUpDropZone();
  byId("upload-form").addEventListener("submit", predict);
  byId("clear").addEventListener("click", clearResults);
  byId("token-apply").addEventListener("click", applyToken);
  byId("token").addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); applyToken(); }
  });
  loadModel();
});
