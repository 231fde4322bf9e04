//! The `sluice` binary with the built-in connectors.

// mimalloc rather than glibc's malloc: sinks allocate and free small buffers per record from many
// threads; glibc's malloc and free were about 23% of the Kinesis sink's CPU in a profile
// (bench/results/kinesis.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice_worker::main_with_plugins(sluice_connector_api::PluginRegistry::new())
}
