//! libtorch through tch, linked from the project's venv.

mod attribution;
mod base;
mod gpu;
mod hf;
mod lora;
mod serve;
mod tokenizer;
mod train;

use tributary_trainer::{DeviceChoice, check};

/// The trainer crate's folder (its Python helpers live under `tests/python`): where the test
/// binary runs now (`CARGO_MANIFEST_DIR`, as cargo and scripts/gpu-check.sh set it), else
/// where it was built.
pub(crate) fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

#[test]
fn libtorch_computes_exactly_on_the_cpu() {
    let r = check(DeviceChoice::Cpu).unwrap();
    assert_eq!(r.device, "Cpu");
    assert_eq!(r.max_error, 0.0);
    assert!(r.threads >= 1);
}

/// Runs on CUDA where a GPU is visible; elsewhere checks the error and says it was skipped.
#[test]
fn cuda_smoke_or_a_clear_error() {
    if tch::Cuda::is_available() {
        let r = check(DeviceChoice::Cuda).unwrap();
        assert_eq!(r.max_error, 0.0);
        assert!(r.device.starts_with("Cuda"));
    } else {
        let err = check(DeviceChoice::Cuda).unwrap_err().to_string();
        assert!(
            err.contains("no CUDA device") && err.contains("--device cpu"),
            "{err}"
        );
        eprintln!("CUDA smoke test skipped: no GPU visible to libtorch on this machine");
    }
}

/// A CUDA build of libtorch is linked whole: its CUDA kernels register when
/// libtorch_cuda loads, and nothing calls it by name, so a linker dropping unused libraries
/// would leave `--device cuda` without a GPU on every machine (build.rs keeps it).
#[test]
fn libtorch_cuda_is_loaded_where_libtorch_has_it() {
    let Ok(lib) = std::env::var("TRIBUTARY_TORCH_LIB") else {
        eprintln!("skipped: TRIBUTARY_TORCH_LIB is not set (scripts/setup.sh sets it)");
        return;
    };
    if !std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        eprintln!("skipped: this libtorch ({lib}) is a CPU build");
        return;
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        maps.contains("libtorch_cuda.so"),
        "libtorch_cuda.so is not loaded: CUDA would never be visible"
    );
}
