//! Running the `sitfer` binary from a test, natively or under the aarch64 test runner.

use std::process::{Command, Output};

/// Runs `sitfer` with what `configure` adds (arguments, environment) and waits for it.
///
/// Under `cargo test --target aarch64-unknown-linux-gnu` the tests themselves run in qemu-user
/// (.cargo/config.toml's runner), and a process they start is exec'd by the host kernel, which
/// refuses an aarch64 binary (ENOEXEC) unless binfmt_misc is set up; then the binary goes
/// through the same qemu the runner uses. qemu-user runs posix_spawn's vfork as a fork, so the
/// refusal does not come back as an error but as exit status 127 with no output (glibc's code
/// for a failed exec), which sitfer itself never exits with.
pub fn run_sitfer(configure: impl Fn(&mut Command)) -> Output {
    let bin = env!("CARGO_BIN_EXE_sitfer");
    let mut direct = Command::new(bin);
    configure(&mut direct);
    let not_executed = |o: &Output| o.status.code() == Some(127) && o.stdout.is_empty() && o.stderr.is_empty();
    match direct.output() {
        Ok(out) if !not_executed(&out) => out,
        Err(e) if e.raw_os_error() != Some(libc::ENOEXEC) => panic!("running {bin}: {e}"),
        _ => {
            let mut emulated = Command::new("qemu-aarch64-static");
            emulated.args(["-cpu", "cortex-a76", "-L", "/usr/aarch64-linux-gnu", bin]);
            configure(&mut emulated);
            emulated
                .output()
                .unwrap_or_else(|e| panic!("running {bin} under qemu-aarch64-static: {e}"))
        }
    }
}
