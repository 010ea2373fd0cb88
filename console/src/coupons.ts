// The issued coupons of a campaign, a page at a time, in issue order (GetCampaign's
// page tokens: forward as served, back by remembering them).

import { describe } from "./api";
import { h, replaceChildren, setText, show } from "./dom";
import { count, localTime } from "./format";
import type { Coupon } from "./gen/coupon/v1/coupon_pb";
import type { ViewContext } from "./view";

const TABLE_PAGE = 100;

/** The issued coupons, TABLE_PAGE at a time, in issue order. */
export function couponsTable(ctx: ViewContext, campaignId: string) {
  const tokens = [""]; // tokens[i] asks for page i; learnt while paging forward
  let page = 0;
  let rowsOnPage = 0;
  let issued = -1n;
  let loading = false;
  const tbody = h("tbody");
  const info = h("span", { class: "muted small", "data-testid": "coupons-page-info" });
  const prev = h("button", { type: "button", class: "btn", "data-testid": "coupons-prev" }, "‹ Previous");
  const next = h("button", { type: "button", class: "btn", "data-testid": "coupons-next" }, "Next ›");
  const error = h("p", { class: "alert alert-error", role: "alert" });
  show(error, false);

  let queued: number | undefined; // a page asked for while another one was loading

  const load = async (target: number): Promise<void> => {
    if (loading) {
      queued = target;
      return;
    }
    loading = true;
    try {
      const answer = await ctx.api.campaigns.getCampaign({
        campaignId,
        pageSize: TABLE_PAGE,
        pageToken: tokens[target]!,
      });
      page = target;
      tokens[page + 1] = answer.nextPageToken;
      tokens.length = page + 2;
      render(answer.coupons);
      show(error, false);
    } catch (err) {
      const failure = describe(err);
      if (failure.kind === "auth") return ctx.onAuthFailure(failure.message);
      setText(error, `Could not load coupons: ${failure.message}`);
      show(error, true);
    } finally {
      loading = false;
    }
    if (queued !== undefined) {
      const then = queued;
      queued = undefined;
      void load(then);
    }
  };

  let range = "";
  const showInfo = (): void => setText(info, range ? `${range} of ${count(issued < 0n ? 0n : issued)}` : "Loading…");

  const render = (coupons: Coupon[]): void => {
    rowsOnPage = coupons.length;
    const offset = page * TABLE_PAGE;
    replaceChildren(tbody, ...coupons.map((c, i) => couponRow(c, offset + i + 1)));
    if (coupons.length === 0) {
      tbody.appendChild(
        h(
          "tr",
          {},
          h("td", { colspan: 5, class: "empty" }, page === 0 ? "No coupons issued yet." : "No more coupons."),
        ),
      );
    }
    range = coupons.length ? `${count(offset + 1)}–${count(offset + coupons.length)}` : "none";
    showInfo();
    prev.disabled = page === 0;
    next.disabled = tokens[page + 1] === "";
  };

  prev.addEventListener("click", () => void load(page - 1));
  next.addEventListener("click", () => void load(page + 1));

  return {
    el: h(
      "div",
      {},
      error,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "table coupons", "data-testid": "coupons-table" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { class: "num" }, "#"),
              h("th", {}, "Code"),
              h("th", {}, "User"),
              h("th", {}, "Issued at"),
              h("th", {}, "Ticket"),
            ),
          ),
          tbody,
        ),
      ),
      h("div", { class: "pager" }, prev, info, next),
    ),
    /** New coupons show up on their own while the page shown is not full yet. */
    onIssuedChanged(now: bigint): void {
      if (now === issued) return;
      issued = now;
      showInfo();
      if (rowsOnPage < TABLE_PAGE || tokens[page + 1] === "") void load(page);
    },
  };
}

function couponRow(c: Coupon, n: number): HTMLTableRowElement {
  return h(
    "tr",
    { "data-testid": "coupon-row" },
    h("td", { class: "num muted" }, count(n)),
    h("td", { class: "code" }, c.code),
    h("td", {}, c.userId),
    h("td", { class: "mono small" }, localTime(c.issuedAt, true)),
    h("td", { class: "mono small muted", title: c.ticketId }, c.ticketId.slice(0, 12) + "…"),
  );
}
