// One campaign: a live issued counter and issue rate, its coupons a page at a time, the
// CSV of all of them, and the "Try it" panel.

import { describe, type Failure } from "./api";
import { couponsTable } from "./coupons";
import { fetchCouponsCsv, saveFile } from "./csv";
import { h, icon, ICONS, replaceChildren, setText, show } from "./dom";
import { alphabetLabel, count, countdown, epochMs, localTime, rate, stateLabel } from "./format";
import { CampaignState, type Campaign } from "./gen/coupon/v1/coupon_pb";
import { everySecond, loop } from "./poll";
import { progress } from "./progress";
import { tryItPanel } from "./tryit";
import type { View, ViewContext } from "./view";

/** The issue rate is measured over the polls of this last stretch of time. */
const RATE_WINDOW_MS = 5000;

export function detailView(ctx: ViewContext, campaignId: string): View {
  const header = campaignHeader();
  const rate = rateMeter();
  const table = couponsTable(ctx, campaignId);
  const csv = csvButton(ctx, campaignId);
  const tryIt = tryItPanel(ctx.api, campaignId);
  const error = h("p", { class: "alert alert-error", role: "alert", "data-testid": "detail-error" });
  show(error, false);
  let campaign: Campaign | undefined;

  const onFailure = (failure: Failure): void => {
    if (failure.kind === "auth") return ctx.onAuthFailure(failure.message);
    setText(error, failure.message);
    show(error, true);
  };

  // The counter: page size 1, the campaign is what matters (0 would mean 10,000).
  const poller = loop(async () => {
    try {
      const answer = await ctx.api.campaigns.getCampaign({ campaignId, pageSize: 1 });
      campaign = answer.campaign;
      if (!campaign) throw new Error("the server answered without a campaign");
      show(error, false);
      header.update(campaign);
      rate.update(campaign);
      table.onIssuedChanged(campaign.issuedCoupons);
    } catch (err) {
      onFailure(describe(err));
      return 5000;
    }
    return campaign.state === CampaignState.SOLD_OUT ? 5000 : 1000;
  });
  const stopTicking = everySecond(() => campaign && header.tick(campaign));

  const el = h(
    "div",
    { class: "detail", "data-testid": "detail", "data-campaign-id": campaignId },
    h("a", { href: "#/", class: "back", "data-testid": "detail-back" }, icon(ICONS.back), "All campaigns"),
    error,
    header.el,
    h("div", { class: "stats" }, header.issuedCard, rate.el, header.timingCard),
    h(
      "div",
      { class: "columns" },
      h(
        "section",
        { class: "card" },
        h("div", { class: "card-head" }, h("h2", {}, "Issued coupons"), csv.el),
        csv.status,
        table.el,
      ),
      tryIt.el,
    ),
  );
  return {
    el,
    dispose: () => {
      poller.stop();
      stopTicking();
      csv.dispose();
      tryIt.dispose();
    },
  };
}

/** The name, state and facts of the campaign, and the issued counter. */
function campaignHeader() {
  const name = h("h1", { "data-testid": "detail-name" }, "Loading…");
  const badge = h("span", { class: "badge", "data-testid": "detail-state" });
  const id = h("span", { class: "mono small muted", "data-testid": "detail-id" });
  const facts = h("div", { class: "small muted" });
  const issued = h("span", { class: "big-number", "data-testid": "detail-issued" }, "—");
  const total = h("span", { "data-testid": "detail-total" }, "—");
  const bar = progress("detail-progress");
  const timingLabel = h("div", { class: "stat-label" }, "Starts");
  const timingValue = h("div", { class: "stat-value", "data-testid": "detail-timing" }, "—");
  const timingNote = h("div", { class: "small muted" });

  const tick = (c: Campaign): void => {
    if (c.state === CampaignState.SCHEDULED && c.startsAt) {
      const left = epochMs(c.startsAt) - Date.now();
      setText(timingLabel, "Starts in");
      setText(timingValue, left > 0 ? countdown(left) : "starting…");
      setText(timingNote, localTime(c.startsAt));
    } else if (c.state === CampaignState.SOLD_OUT) {
      setText(timingLabel, "Sold out at");
      setText(timingValue, localTime(c.soldOutAt, true));
      setText(timingNote, `started ${localTime(c.startsAt)}`);
    } else {
      setText(timingLabel, "Started");
      setText(timingValue, localTime(c.startsAt));
      setText(timingNote, "issuing now");
    }
  };

  return {
    el: h("div", { class: "detail-head" }, h("div", { class: "title-row" }, name, badge), id, facts),
    issuedCard: h(
      "div",
      { class: "card stat" },
      h("div", { class: "stat-label" }, "Issued"),
      h("div", { class: "stat-value" }, issued, h("span", { class: "muted" }, " / "), total),
      bar.el,
    ),
    timingCard: h("div", { class: "card stat" }, timingLabel, timingValue, timingNote),
    tick,
    update(c: Campaign): void {
      setText(name, c.name);
      document.title = `${c.name} · Coupon console`;
      const state = stateLabel(c.state);
      setText(badge, state.label);
      badge.className = `badge badge-${state.key}`;
      badge.dataset.state = state.key;
      setText(id, c.id);
      setText(facts, `Alphabet: ${alphabetLabel(c.codeAlphabet)} · Created ${localTime(c.createdAt)}`);
      setText(issued, count(c.issuedCoupons));
      issued.dataset.value = String(c.issuedCoupons);
      setText(total, count(c.totalCoupons));
      bar.update(c.issuedCoupons, c.totalCoupons);
      tick(c);
    },
  };
}

/** Coupons per second from successive polls; once sold out, the campaign's average. */
function rateMeter() {
  const samples: { at: number; issued: number }[] = [];
  const value = h("div", { class: "stat-value", "data-testid": "detail-rate" }, "—");
  const note = h("div", { class: "small muted" }, "coupons per second");
  return {
    el: h("div", { class: "card stat" }, h("div", { class: "stat-label" }, "Issue rate"), value, note),
    update(c: Campaign): void {
      const now = performance.now();
      samples.push({ at: now, issued: Number(c.issuedCoupons) });
      while (samples.length > 2 && now - samples[0]!.at > RATE_WINDOW_MS) samples.shift();
      if (c.state === CampaignState.SOLD_OUT && c.soldOutAt && c.startsAt) {
        const seconds = Math.max(0.001, (epochMs(c.soldOutAt) - epochMs(c.startsAt)) / 1000);
        setText(value, rate(Number(c.totalCoupons) / seconds));
        setText(note, "coupons per second, on average until sold out");
      } else if (c.state === CampaignState.LIVE && samples.length >= 2) {
        const first = samples[0]!;
        const last = samples[samples.length - 1]!;
        setText(value, rate(((last.issued - first.issued) * 1000) / (last.at - first.at)));
        setText(note, "coupons per second, last few seconds");
      } else {
        setText(value, "—");
        setText(note, "coupons per second");
      }
    },
  };
}

/** "Download CSV": every coupon, a page of 10,000 at a time, with progress. */
function csvButton(ctx: ViewContext, campaignId: string) {
  const button = h(
    "button",
    { type: "button", class: "btn", "data-testid": "csv-download" },
    icon(ICONS.download),
    "Download CSV",
  );
  const status = h("div", { class: "csv-status", "data-testid": "csv-progress", role: "status" });
  show(status, false);
  const controller = new AbortController();

  button.addEventListener("click", async () => {
    button.disabled = true;
    show(status, true);
    const bar = progress("csv-progress-bar");
    const label = h("span", {}, "Preparing…");
    replaceChildren(status, label, bar.el);
    let expected = 0n;
    try {
      const first = await ctx.api.campaigns.getCampaign({ campaignId, pageSize: 1 }, { signal: controller.signal });
      expected = first.campaign?.issuedCoupons ?? 0n;
      const { text, rows } = await fetchCouponsCsv(
        ctx.api,
        campaignId,
        (rows) => {
          setText(label, `Downloading… ${count(rows)} coupons`);
          bar.update(BigInt(rows), expected > BigInt(rows) ? expected : BigInt(rows));
        },
        controller.signal,
      );
      saveFile(`coupons-${campaignId}.csv`, text);
      replaceChildren(
        status,
        h(
          "span",
          { "data-testid": "csv-done", "data-rows": rows },
          `Saved coupons-${campaignId}.csv (${count(rows)} coupons).`,
        ),
      );
    } catch (err) {
      const failure = describe(err);
      if (failure.kind === "auth") return ctx.onAuthFailure(failure.message);
      if (failure.kind !== "aborted")
        replaceChildren(status, h("span", { class: "error-text" }, `Download failed: ${failure.message}`));
    } finally {
      button.disabled = false;
    }
  });
  return { el: button, status, dispose: () => controller.abort() };
}
