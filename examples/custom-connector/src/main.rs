//! A `sluice` worker binary that also offers the Heartbeat connector.

fn main() -> std::process::ExitCode {
    sluice_worker::main_with_plugins(sluice_example_custom_connector::plugins())
}
