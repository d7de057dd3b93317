//! Puts libtorch's directory on the rpath of this crate's binaries and tests, so they run
//! without LD_LIBRARY_PATH, and links libtorch_cuda where libtorch has it. torch-sys reports
//! the directory (`links = "tch"`).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        // Nothing calls libtorch_cuda directly (its kernels register themselves when it
        // loads), so a linker that drops unused libraries (--as-needed, the default on
        // Debian and Ubuntu) leaves it out and CUDA is never visible: keep it.
        if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
