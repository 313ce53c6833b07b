// The index's filter: layer, score range and unit id; rows that do not match are hidden (no server needed).
(function () {
  const layer = document.getElementById("f-layer");
  const low = document.getElementById("f-min");
  const high = document.getElementById("f-max");
  const unit = document.getElementById("f-unit");
  const count = document.getElementById("f-count");
  const rows = Array.from(document.querySelectorAll("table.units tbody tr"));
  const sections = Array.from(document.querySelectorAll("section.layer"));

  function apply() {
    const from = low.value === "" ? -Infinity : Number(low.value);
    const to = high.value === "" ? Infinity : Number(high.value);
    const text = unit.value.trim().toLowerCase();
    let shown = 0;
    for (const row of rows) {
      const score = row.dataset.score === "" ? null : Number(row.dataset.score);
      const inRange = score === null ? from <= 0 && to >= 1 : score >= from && score <= to;
      const ok = (!layer.value || row.dataset.layer === layer.value) && inRange &&
        (!text || row.dataset.unit.toLowerCase().includes(text));
      row.hidden = !ok;
      if (ok) shown += 1;
    }
    for (const section of sections) {
      section.hidden = !!layer.value && section.dataset.layer !== layer.value;
    }
    count.textContent = shown + " of " + rows.length + " units";
  }

  for (const input of [layer, low, high, unit]) input.addEventListener("input", apply);
  apply();
})();
