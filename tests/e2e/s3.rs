//! An S3-compatible server for the tests: moto's server mode, installed by `scripts/setup.sh`
//! (`TRIBUTARY_MOTO`), started on a free port and killed when dropped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait;

pub(crate) struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    /// Starts the server and creates `bucket` in it.
    pub(crate) fn start(bucket: &str) -> Self {
        let bin = std::env::var("TRIBUTARY_MOTO").expect(
            "TRIBUTARY_MOTO is not set: run the tests through `make test`, or \
             `eval \"$(scripts/setup.sh)\"` first (it installs moto's S3 server)",
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let mut moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        wait::until(
            format_args!("moto_server listening on {port}"),
            Duration::from_millis(100),
            || {
                if let Some(st) = moto.child.try_wait().unwrap() {
                    panic!("moto_server ({bin}) exited before listening: {st}");
                }
                TcpStream::connect(("127.0.0.1", port)).ok()
            },
        );
        // CreateBucket: moto accepts an unsigned request.
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            conn,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "CreateBucket: {reply}");
        moto
    }

    /// The environment a `tributary` process needs to reach this server.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "tributary-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "tributary-test".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// The same settings as object-store options, for `Lake::open_with` in the test process.
    pub(crate) fn options(&self) -> HashMap<String, String> {
        self.env()
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase().replace("endpoint_url", "endpoint"),
                    v,
                )
            })
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
