// Before the page draws: the styles for a page whose script runs (no flash of the no-JS view).
document.documentElement.className = "js";
