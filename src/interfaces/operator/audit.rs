//! `audit`: decides the log again in memory and compares with the store. Exit 0 when
//! they are identical, 1 when they differ (the first differences listed), 2 when the
//! audit could not run.

use std::process::ExitCode;

use crate::application::AuditDecisions;
use crate::application::audit_decisions::{Input, Output};
use crate::domain::ports::{DecidedStateReader, LogReplay};

/// Exit code when the store differs from what the log implies.
pub const DIFFERENT: u8 = 1;

#[derive(clap::Args, Debug, Clone)]
pub struct AuditArgs {
    /// Differences listed at most; all of them are counted.
    #[arg(long, env = "COUPON_AUDIT_MAX_LISTED", default_value_t = 20)]
    pub max_listed: usize,
}

pub async fn run<S: DecidedStateReader, L: LogReplay>(
    audit: AuditDecisions<S, L>,
    args: &AuditArgs,
) -> ExitCode {
    let bar = super::progress::records_bar("replaying the log");
    let progress = bar.clone();
    let input = Input {
        max_listed: args.max_listed,
        on_progress: Box::new(move |done, total| {
            progress.set_length(total);
            progress.set_position(done);
        }),
    };
    let result = audit.execute(input).await;
    bar.finish_and_clear();
    match result {
        Ok(output) => {
            print!("{}", report(&output));
            if output.difference_count == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(DIFFERENT)
            }
        }
        Err(error) => super::could_not_run("audit", &error),
    }
}

/// The audit's answer, for people and for `grep`.
pub fn report(output: &Output) -> String {
    let c = &output.compared;
    let offsets: Vec<String> = output
        .offsets
        .iter()
        .map(|(partition, offset)| format!("{partition}:{offset}"))
        .collect();
    let mut text = format!(
        "replayed {} log records up to the decided offsets (partition:offset) {}\n\
         compared {} campaigns, {} coupons, {} tickets",
        output.records,
        if offsets.is_empty() {
            "none".to_owned()
        } else {
            offsets.join(" ")
        },
        c.campaigns,
        c.coupons,
        c.tickets,
    );
    if c.undecided_campaigns > 0 {
        text += &format!(
            " ({} campaigns created but not decided yet: not compared)",
            c.undecided_campaigns
        );
    }
    text.push('\n');
    if output.difference_count == 0 {
        text += "identical: the store holds exactly what the log implies\n";
        return text;
    }
    text += &format!(
        "{} differences between what the log implies and what the store holds",
        output.difference_count
    );
    if (output.differences.len() as u64) < output.difference_count {
        text += &format!(" (the first {} listed)", output.differences.len());
    }
    text.push_str(":\n");
    for difference in &output.differences {
        text += &format!("  {difference}\n");
    }
    text
}
