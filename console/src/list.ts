// The campaigns list: newest first, a page at a time ("Load more"), refreshed every
// second while something is about to start or is issuing, every 5 s otherwise.

import { describe, type Api } from "./api";
import { h, setText, show, replaceChildren } from "./dom";
import { alphabetLabel, countdown, epochMs, localTime, stateLabel } from "./format";
import { CampaignState, type Campaign } from "./gen/coupon/v1/coupon_pb";
import { everySecond, loop } from "./poll";
import { progress, type Progress } from "./progress";
import type { View, ViewContext } from "./view";

const PAGE_SIZE = 20;
/** A scheduled campaign starting within this is "soon": refresh every second. */
const SOON_MS = 5 * 60_000;
const FAST_MS = 1000;
const SLOW_MS = 5000;

export interface CampaignList extends View {
  /** Refreshes at once (after a creation). */
  refresh(): void;
}

export function listView(ctx: ViewContext): CampaignList {
  const rows = new Map<string, Row>();
  const tbody = h("tbody");
  const empty = h(
    "p",
    { class: "empty", "data-testid": "list-empty" },
    "No campaigns yet. Create the first one above.",
  );
  const error = h("p", { class: "alert alert-error", role: "alert", "data-testid": "list-error" });
  const more = h("button", { type: "button", class: "btn", "data-testid": "list-load-more" }, "Load more");
  let shown = PAGE_SIZE; // how many campaigns the manager asked to see
  let campaigns: Campaign[] = [];
  show(empty, false);
  show(error, false);
  const moreRow = h("div", { class: "actions center" }, more);
  show(moreRow, false);

  const round = async (): Promise<number> => {
    try {
      const { items, hasMore } = await fetchNewest(ctx.api, shown);
      campaigns = items;
      render(items);
      show(moreRow, hasMore);
      show(error, false);
    } catch (err) {
      const failure = describe(err);
      if (failure.kind === "auth") {
        ctx.onAuthFailure(failure.message);
        return SLOW_MS;
      }
      setText(error, `Could not refresh the list: ${failure.message}`);
      show(error, true);
    }
    return busy(campaigns) ? FAST_MS : SLOW_MS;
  };

  const render = (items: Campaign[]): void => {
    const seen = new Set<string>();
    let next = tbody.firstChild; // where the next row belongs
    for (const campaign of items) {
      seen.add(campaign.id);
      let row = rows.get(campaign.id);
      if (!row) rows.set(campaign.id, (row = campaignRow(campaign, ctx)));
      row.update(campaign);
      // Rows are kept and updated in place; only new ones (on top) are inserted.
      if (row.el === next) next = next.nextSibling;
      else tbody.insertBefore(row.el, next);
    }
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.el.remove();
        rows.delete(id);
      }
    }
    show(empty, items.length === 0);
  };

  const refresher = loop(round);
  const stopTicking = everySecond(() => rows.forEach((row) => row.tick()));
  more.addEventListener("click", () => {
    shown += PAGE_SIZE;
    refresher.kick();
  });

  const table = h(
    "table",
    { class: "table campaigns", "data-testid": "campaign-list" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, "Campaign"),
        h("th", { class: "col-state" }, "State"),
        h("th", { class: "col-progress" }, "Issued"),
        h("th", { class: "col-timing" }, "Timing"),
        h("th", { class: "col-alphabet" }, "Alphabet"),
      ),
    ),
    tbody,
  );
  const el = h(
    "section",
    { class: "card" },
    h("div", { class: "card-head" }, h("h2", {}, "Campaigns")),
    error,
    h("div", { class: "table-wrap" }, table),
    empty,
    moreRow,
  );
  return {
    el,
    refresh: () => refresher.kick(),
    dispose: () => {
      refresher.stop();
      stopTicking();
    },
  };
}

/** The newest `n` campaigns, through as many pages (of at most 100) as that takes. */
async function fetchNewest(api: Api, n: number): Promise<{ items: Campaign[]; hasMore: boolean }> {
  const items: Campaign[] = [];
  let pageToken = "";
  do {
    const pageSize = Math.min(100, n - items.length);
    const page = await api.campaigns.listCampaigns({ pageSize, pageToken });
    items.push(...page.campaigns);
    pageToken = page.nextPageToken;
  } while (pageToken !== "" && items.length < n);
  return { items, hasMore: pageToken !== "" };
}

function busy(campaigns: Campaign[]): boolean {
  const now = Date.now();
  return campaigns.some(
    (c) =>
      c.state === CampaignState.LIVE ||
      (c.state === CampaignState.SCHEDULED && c.startsAt !== undefined && epochMs(c.startsAt) - now < SOON_MS),
  );
}

interface Row {
  el: HTMLTableRowElement;
  update(campaign: Campaign): void;
  /** Advances the countdown between refreshes. */
  tick(): void;
}

function campaignRow(first: Campaign, ctx: ViewContext): Row {
  const name = h("a", { href: ctx.hrefFor(first.id), class: "campaign-name", "data-testid": "campaign-name" });
  const id = h("div", { class: "mono small muted" }, first.id);
  const badge = h("span", { class: "badge", "data-testid": "campaign-state" });
  const bar: Progress = progress("campaign-progress");
  const timing = h("div", { class: "timing" });
  const alphabet = h("span", { "data-testid": "campaign-alphabet" });
  const el = h(
    "tr",
    { "data-testid": "campaign-row", "data-campaign-id": first.id },
    h("td", {}, name, id),
    h("td", {}, badge),
    h("td", {}, bar.el),
    h("td", {}, timing),
    h("td", {}, alphabet),
  );
  let current = first;
  let countdownEl: HTMLElement | undefined;

  const renderTiming = (c: Campaign): void => {
    countdownEl = undefined;
    if (c.state === CampaignState.SCHEDULED) {
      countdownEl = h("strong", { class: "countdown", "data-testid": "campaign-countdown" });
      replaceChildren(
        timing,
        h("span", { class: "muted" }, "Starts in "),
        countdownEl,
        h("div", { class: "small muted" }, localTime(c.startsAt)),
      );
      tick();
    } else if (c.state === CampaignState.SOLD_OUT) {
      replaceChildren(
        timing,
        h("span", { class: "muted" }, "Sold out at "),
        h("span", { "data-testid": "campaign-sold-out-at" }, localTime(c.soldOutAt, true)),
        h("div", { class: "small muted" }, `Started ${localTime(c.startsAt)}`),
      );
    } else {
      replaceChildren(timing, h("span", { class: "muted" }, "Started "), h("span", {}, localTime(c.startsAt)));
    }
  };

  const tick = (): void => {
    if (!countdownEl || !current.startsAt) return;
    const left = epochMs(current.startsAt) - Date.now();
    setText(countdownEl, left > 0 ? countdown(left) : "starting…");
  };

  let renderedKey = "";
  const update = (c: Campaign): void => {
    current = c;
    setText(name, c.name);
    const state = stateLabel(c.state);
    setText(badge, state.label);
    badge.className = `badge badge-${state.key}`;
    badge.dataset.state = state.key;
    el.dataset.state = state.key;
    bar.update(c.issuedCoupons, c.totalCoupons);
    setText(alphabet, alphabetLabel(c.codeAlphabet));
    // Rebuild the timing cell only when what it shows changed.
    const key = `${c.state}|${c.startsAt?.seconds}|${c.soldOutAt?.seconds}|${c.soldOutAt?.nanos}`;
    if (key !== renderedKey) {
      renderedKey = key;
      renderTiming(c);
    }
  };

  return { el, update, tick };
}
