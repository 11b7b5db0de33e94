//! Running the `sitfer` binary from a test, natively or under the aarch64 test runner.

use std::process::{Command, Output};

/// Runs `sitfer` with what `configure` adds (arguments, environment) and waits for it.
///
/// Under `cargo test --target aarch64-unknown-linux-gnu` the tests themselves run in qemu-user
/// (.cargo/config.toml's runner), and a process they start is exec'd by the host kernel, which
/// refuses an aarch64 binary (ENOEXEC) unless binfmt_misc is set up; then the binary goes
/// through the same qemu the runner uses.
pub fn run_sitfer(configure: impl Fn(&mut Command)) -> Output {
    let bin = env!("CARGO_BIN_EXE_sitfer");
    let mut direct = Command::new(bin);
    configure(&mut direct);
    match direct.output() {
        Ok(out) => out,
        Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => {
            let mut emulated = Command::new("qemu-aarch64-static");
            emulated.args(["-cpu", "cortex-a76", "-L", "/usr/aarch64-linux-gnu", bin]);
            configure(&mut emulated);
            emulated
                .output()
                .unwrap_or_else(|e| panic!("running {bin} under qemu-aarch64-static: {e}"))
        }
        Err(e) => panic!("running {bin}: {e}"),
    }
}
