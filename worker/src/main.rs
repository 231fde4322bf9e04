//! The `sluice` binary with the built-in connectors.

fn main() -> std::process::ExitCode {
    sluice_worker::main_with_plugins(sluice_connector_api::PluginRegistry::new())
}
