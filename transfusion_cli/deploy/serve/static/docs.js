// Renders the server's OpenAPI document as a list of endpoints (text only, no HTML from data).
"use strict";

function node(tag, text, className) {
  const element = document.createElement(tag);
  if (text !== undefined) element.textContent = text;
  if (className) element.className = className;
  return element;
}

function describeOperation(method, path, operation) {
  const section = node("section", undefined, "endpoint");
  const heading = node("h3");
  heading.append(node("span", method.toUpperCase(), "method"), node("code", path));
  section.append(heading);
  if (operation.summary) section.append(node("p", operation.summary));
  if (operation.description) section.append(node("p", operation.description, "hint"));
  for (const parameter of operation.parameters || []) {
    section.append(node("p", "Parameter " + parameter.name + " (" + parameter.in + "): "
      + (parameter.description || ""), "hint"));
  }
  const body = operation.requestBody && operation.requestBody.content;
  if (body) section.append(node("p", "Body: " + Object.keys(body).join(", "), "hint"));
  if (operation.security || operation.dependencies) {
    section.append(node("p", "Bearer token when the server has one.", "hint"));
  }
  const responses = node("ul");
  for (const [status, response] of Object.entries(operation.responses || {})) {
    responses.append(node("li", status + ": " + (response.description || "")));
  }
  section.append(responses);
  return section;
}

async function render() {
  const status = document.getElementById("docs-status");
  try {
    const response = await fetch("/openapi.json", { cache: "no-store" });
    const spec = await response.json();
    const list = document.getElementById("endpoints");
    for (const [path, operations] of Object.entries(spec.paths || {})) {
      for (const [method, operation] of Object.entries(operations)) {
        list.append(describeOperation(method, path, operation));
      }
    }
    status.textContent = spec.info.title + " " + spec.info.version + ": " + spec.info.description;
  } catch (error) {
    status.textContent = "Could not load /openapi.json: " + error.message;
  }
}

document.addEventListener("DOMContentLoaded", render);
