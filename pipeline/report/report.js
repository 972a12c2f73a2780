// Sorting and filtering of the report's tables. Reads text with textContent only (never
// innerHTML), so token strings stay inert text.
(function () {
  "use strict";

  function cellKey(row, index, numeric) {
    var cell = row.cells[index];
    if (!cell) { return numeric ? -Infinity : ""; }
    var raw = cell.getAttribute("data-value");
    if (numeric) {
      var x = parseFloat(raw !== null ? raw : cell.textContent.replace(/[^0-9eE+\-.]/g, ""));
      return isNaN(x) ? -Infinity : x;
    }
    return cell.textContent.trim().toLowerCase();
  }

  function sortBy(table, th, index) {
    var numeric = th.getAttribute("data-type") === "num";
    var asc = th.getAttribute("aria-sort") !== "ascending";
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r, i) { r._order = i; });
    rows.sort(function (a, b) {
      var ka = cellKey(a, index, numeric), kb = cellKey(b, index, numeric);
      var c = ka < kb ? -1 : ka > kb ? 1 : a._order - b._order;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function applyFilters(tableId) {
    var table = document.getElementById(tableId);
    if (!table) { return; }
    var text = document.querySelector('input.filter[data-table="' + tableId + '"]');
    var query = text ? text.value.trim().toLowerCase() : "";
    var selects = document.querySelectorAll('select.filter-select[data-table="' + tableId + '"]');
    var rows = table.tBodies[0].rows, shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var ok = !query || rows[i].textContent.toLowerCase().indexOf(query) !== -1;
      for (var j = 0; ok && j < selects.length; j++) {
        var want = selects[j].value;
        ok = !want || rows[i].getAttribute("data-" + selects[j].getAttribute("data-col")) === want;
      }
      rows[i].style.display = ok ? "" : "none";
      if (ok) { shown++; }
    }
    var count = document.querySelector('.count[data-table="' + tableId + '"]');
    if (count) { count.textContent = shown + " of " + rows.length + " rows"; }
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, index) {
      th.addEventListener("click", function () { sortBy(table, th, index); });
    });
  });
  document.querySelectorAll("input.filter, select.filter-select").forEach(function (el) {
    var id = el.getAttribute("data-table");
    el.addEventListener(el.tagName === "SELECT" ? "change" : "input", function () { applyFilters(id); });
    applyFilters(id);
  });
})();
