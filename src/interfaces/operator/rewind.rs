//! `rewind`: moves decided offsets back so the workers decide those records again.
//! Exit 0 when done (or nothing to move), 2 when refused or it could not run.

use std::process::ExitCode;

use chrono::DateTime;

use crate::application::RewindDecisions;
use crate::application::rewind_decisions::{Input, Output, Target};
use crate::domain::ports::{IssuanceStore, LogReplay};

#[derive(clap::Args, Debug, Clone)]
pub struct RewindArgs {
    /// Where to rewind to: `earliest` (the first record), an offset, or an RFC 3339
    /// instant (the first record the log appended at or after it).
    #[arg(long, env = "COUPON_REWIND_TO", value_parser = parse_target)]
    pub to: Target,

    /// A partition to rewind (repeat the flag, or list them with commas, for several);
    /// every partition when absent.
    #[arg(
        long = "partition",
        env = "COUPON_REWIND_PARTITIONS",
        value_name = "N",
        value_delimiter = ','
    )]
    pub only_partitions: Vec<u32>,
}

fn parse_target(raw: &str) -> Result<Target, String> {
    if raw == "earliest" {
        return Ok(Target::Earliest);
    }
    if let Ok(offset) = raw.parse::<u64>() {
        return Ok(Target::Offset(offset));
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|at| Target::Time(at.to_utc()))
        .map_err(|_| {
            format!(
                "{raw:?} is neither `earliest`, an offset, nor an RFC 3339 instant \
                 (e.g. 2026-12-01T20:00:00+09:00)"
            )
        })
}

pub async fn run<S: IssuanceStore, L: LogReplay>(
    rewind: RewindDecisions<S, L>,
    args: &RewindArgs,
) -> ExitCode {
    let input = Input {
        to: args.to,
        partitions: args.only_partitions.clone(),
    };
    match rewind.execute(input).await {
        Ok(output) => {
            print!("{}", report(&output));
            ExitCode::SUCCESS
        }
        Err(error) => super::could_not_run("rewind", &error),
    }
}

pub fn report(output: &Output) -> String {
    let mut text = String::new();
    let mut again = 0;
    for m in &output.moved {
        if m.to < m.from {
            again += m.from - m.to;
            text += &format!(
                "partition {}: decided offset {} -> {} ({} records to decide again)\n",
                m.partition,
                m.from,
                m.to,
                m.from - m.to
            );
        } else {
            text += &format!(
                "partition {}: decided offset {}, not moved\n",
                m.partition, m.from
            );
        }
    }
    text += &format!(
        "{again} records will be decided again, changing no stored row: by a worker started \
         now at once, by one already running when its partition's next record arrives \
         (its commit is fenced and it resumes from the new offset)\n"
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_earliest_an_offset_or_an_instant() {
        assert_eq!(parse_target("earliest"), Ok(Target::Earliest));
        assert_eq!(parse_target("1200"), Ok(Target::Offset(1_200)));
        let at = parse_target("2026-12-01T20:00:00+09:00");
        let expected = DateTime::parse_from_rfc3339("2026-12-01T11:00:00Z").map(|t| t.to_utc());
        assert_eq!(at, Ok(Target::Time(expected.expect("instant"))));
        let refused = parse_target("yesterday").expect_err("refused");
        assert!(refused.contains("RFC 3339"), "{refused}");
        assert!(parse_target("-3").is_err());
    }
}
