// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";

  // Read-aloud (elder mode asks for it): the browser's own speech synthesis
  // reads the page's main text in the page's language.
  function setUpReadAloud() {
    var button = document.getElementById("read-aloud");
    if (!button || !("speechSynthesis" in window)) return;
    var label = button.textContent;
    button.hidden = false;
    button.addEventListener("click", function () {
      if (window.speechSynthesis.speaking) {
        window.speechSynthesis.cancel();
        button.textContent = label;
        return;
      }
      var main = document.querySelector("main");
      var utterance = new SpeechSynthesisUtterance(main ? main.innerText : document.body.innerText);
      utterance.lang = document.documentElement.lang || "zh-CN";
      utterance.onend = function () { button.textContent = label; };
      button.textContent = button.getAttribute("data-stop");
      window.speechSynthesis.speak(utterance);
    });
  }

  // The tracking page follows its request without a reload: it asks the
  // server for the fresh status part every few seconds, and stops once the
  // request is over.
  function setUpLiveTracking() {
    var live = document.querySelector("[data-live]");
    if (!live || !window.fetch) return;
    var every = parseInt(live.getAttribute("data-every") || "5000", 10);
    var shown = null;
    function poll() {
      fetch(live.getAttribute("data-live"), {headers: {"Accept": "application/json"}, credentials: "same-origin"})
        .then(function (resp) { return resp.ok ? resp.json() : null; })
        .then(function (data) {
          if (data && data.html !== shown) {  // a new status or a new message
            if (shown !== null || data.status !== live.getAttribute("data-status")) live.innerHTML = data.html;
            shown = data.html;
            live.setAttribute("data-status", data.status);
          }
          if (!data || !data.final) window.setTimeout(poll, every);
        })
        .catch(function () { window.setTimeout(poll, every * 2); });
    }
    window.setTimeout(poll, every);
  }

  // The console's queue: one box ticks every row on the page (without a
  // script, each row is ticked by hand).
  function setUpSelectAll() {
    var all = document.getElementById("select-all");
    if (!all) return;
    var boxes = document.querySelectorAll("input[type=checkbox][name=ids]");
    all.hidden = false;
    all.addEventListener("change", function () {
      for (var i = 0; i < boxes.length; i++) boxes[i].checked = all.checked;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpReadAloud();
    setUpLiveTracking();
    setUpSelectAll();
  });
})();
