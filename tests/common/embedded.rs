//! An embedded server in a temp dir, with a Connect client pointed at it.

use coupon::modes::{ServeArgs, embedded};

use super::connect::Client;

pub struct Server {
    pub client: Client,
    pub running: embedded::Running,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts on a free loopback port with these client limits.
    pub async fn start(serve: ServeArgs) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = embedded::Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().to_path_buf(),
            admin: Default::default(),
            serve,
        };
        let running = embedded::start(config).await.expect("server starts");
        let client = Client::new(format!("http://{}", running.addr));
        Self {
            client,
            running,
            _dir: dir,
        }
    }
}
