// The issued/total bar shared by the list and the detail page.

import { count } from "./format";
import { h, setText } from "./dom";

export interface Progress {
  el: HTMLElement;
  update(issued: bigint, total: bigint): void;
}

export function progress(testid: string): Progress {
  const fill = h("div", { class: "progress-fill" });
  const label = h("span", { class: "progress-label", "data-testid": `${testid}-label` });
  const bar = h("div", { class: "progress-bar", role: "progressbar", "aria-valuemin": 0 }, fill);
  const el = h("div", { class: "progress", "data-testid": testid }, bar, label);
  return {
    el,
    update(issued, total) {
      const share = total > 0n ? Number(issued) / Number(total) : 0;
      fill.style.width = `${(Math.min(1, share) * 100).toFixed(2)}%`;
      bar.setAttribute("aria-valuenow", String(issued));
      bar.setAttribute("aria-valuemax", String(total));
      setText(label, `${count(issued)} / ${count(total)}`);
    },
  };
}
