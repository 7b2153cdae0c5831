//! examples/provider.py as a subprocess on a free port, stopped on drop. Without python3 the
//! test fails; it never skips.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct ExampleProvider {
    child: Child,
    pub url: String,
}

impl ExampleProvider {
    /// Starts the example with `args` (besides `--port 0`) and reads the port it prints.
    pub fn start(args: &[&str]) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/provider.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed to run examples/provider.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("the example prints its port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the example printed {line:?}, not a port"));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Stops the service, as an outage would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ExampleProvider {
    fn drop(&mut self) {
        self.kill();
    }
}
