//! The operator's hooks: shell commands that pause and resume the service's issuing
//! worker (e.g. `kill -STOP <pid>` / `kill -CONT <pid>`), so tickets stay PENDING.

use std::process::{ExitStatus, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{what} command {command:?} could not be started: {source}")]
    Spawn {
        what: &'static str,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} command {command:?} failed ({status})")]
    Failed {
        what: &'static str,
        command: String,
        status: ExitStatus,
    },
}

/// Runs `command` with `sh -c` and waits for it; anything but exit 0 is an error.
/// `what` names the hook in messages ("pause", "resume").
pub async fn run_shell(what: &'static str, command: &str) -> Result<(), ControlError> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .status()
        .await
        .map_err(|source| ControlError::Spawn {
            what,
            command: command.to_owned(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(ControlError::Failed {
            what,
            command: command.to_owned(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_that_exits_zero_succeeds() {
        run_shell("pause", "true && test 1 -eq 1")
            .await
            .expect("ok");
    }

    #[tokio::test]
    async fn a_failing_command_is_an_error_naming_it() {
        let error = run_shell("resume", "exit 3").await.expect_err("fails");
        assert!(matches!(error, ControlError::Failed { what: "resume", .. }));
        assert!(error.to_string().contains("exit 3"), "{error}");
    }
}
