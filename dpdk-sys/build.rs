//! Without the `dpdk` feature: nothing (the crate is empty and needs no DPDK, libclang or C
//! compiler). With it: bindgen over `src/wrapper.h`, `src/shim.c` compiled by `cc`, and dynamic
//! linking against the system DPDK found by pkg-config (`libdpdk`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    if let Err(message) = dpdk::build() {
        // A build script reports failure through its exit status; the message is what the user
        // reads in cargo's output, so it names the missing piece and the package that provides it.
        eprintln!("dpdk-sys: {message}");
        std::process::exit(1);
    }
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::env;
    use std::path::PathBuf;
    use std::process::Command;

    /// DPDK libraries bound by the wrapper header but absent from `pkg-config --libs libdpdk`
    /// (Debian lists drivers only in `Libs.private`, for static links). They are PMD/bus
    /// libraries that live in the PMD directory, with symlinks in the library directory, so
    /// linking them by name and the EAL loading the same files as plugins share one copy
    /// (the dynamic loader recognises the same file).
    const DRIVER_LIBS: &[&str] = &["rte_bus_vdev", "rte_net_ring"];

    /// The DPDK release series whose headers `src/shim.c` and the safe layer were written for.
    const SUPPORTED_MAJOR: &str = "22.";

    pub fn build() -> Result<(), String> {
        for file in ["src/wrapper.h", "src/shim.h", "src/shim.c"] {
            println!("cargo:rerun-if-changed={file}");
        }
        println!("cargo:rerun-if-env-changed=PKG_CONFIG");
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

        // Dynamic, never static: the EAL then loads its PMDs from RTE_EAL_PMD_PATH, which it
        // does only when librte_eal is a shared object.
        let lib = pkg_config::Config::new()
            .statik(false)
            .cargo_metadata(true)
            .probe("libdpdk")
            .map_err(|e| {
                format!(
                    "the `dpdk` feature needs the system DPDK (Debian/Ubuntu: apt-get install \
                     libdpdk-dev pkg-config): {e}"
                )
            })?;
        if !lib.version.starts_with(SUPPORTED_MAJOR) {
            println!(
                "cargo:warning=dpdk-sys is written for DPDK 22.11, pkg-config found {}",
                lib.version
            );
        }
        let libdir = lib
            .link_paths
            .first()
            .cloned()
            .or_else(|| {
                pkg_config::get_variable("libdpdk", "libdir")
                    .ok()
                    .map(PathBuf::from)
            })
            .ok_or("pkg-config gives no library directory for libdpdk")?;
        for name in DRIVER_LIBS {
            if !libdir.join(format!("lib{name}.so")).exists() {
                return Err(format!("lib{name}.so is missing from {}", libdir.display()));
            }
            println!("cargo:rustc-link-lib=dylib={name}");
        }

        // The raw cflags, not pkg-config's parsed include list: Debian's libdpdk.pc also carries
        // `-include rte_config.h` and `-march=corei7`, which the static-inline code needs.
        let cflags = raw_cflags()?;
        let src =
            PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?).join("src");

        let mut shim = cc::Build::new();
        shim.file(src.join("shim.c"))
            .include(&src)
            .define("ALLOW_EXPERIMENTAL_API", None)
            .warnings(true)
            .extra_warnings(true);
        for flag in &cflags {
            shim.flag(flag);
        }
        shim.try_compile("dpdk_sys_shim")
            .map_err(|e| format!("compiling src/shim.c failed: {e}"))?;

        let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
        let bindings = bindgen::Builder::default()
            .header(src.join("wrapper.h").to_string_lossy())
            .clang_args(&cflags)
            .clang_arg(format!("-I{}", src.display()))
            .clang_arg("-DALLOW_EXPERIMENTAL_API")
            .allowlist_function("rte_.*|dpdk_sys_.*")
            .allowlist_type("rte_.*")
            .allowlist_var("RTE_.*|RING_F_.*|SOCKET_ID_ANY|LCORE_ID_ANY|E_RTE_.*")
            // Static inline functions have no symbol in the shared libraries; the ones the crate
            // needs are reached through src/shim.c instead (see lib.rs for why not
            // `wrap_static_fns`).
            .generate_inline_functions(false)
            // DPDK's doxygen comments contain indented blocks that rustdoc would compile as
            // doctests; the C headers remain the reference.
            .generate_comments(false)
            .default_enum_style(bindgen::EnumVariation::Consts)
            .prepend_enum_name(false)
            .derive_default(true)
            .derive_debug(false)
            .layout_tests(true)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
            .generate()
            .map_err(|e| {
                format!(
                    "bindgen failed on src/wrapper.h ({e}); it needs libclang (Debian: apt-get \
                     install libclang-dev clang)"
                )
            })?;
        bindings
            .write_to_file(out.join("bindings.rs"))
            .map_err(|e| format!("writing bindings.rs: {e}"))?;
        println!("cargo:rustc-env=DPDK_SYS_VERSION={}", lib.version);
        Ok(())
    }

    fn raw_cflags() -> Result<Vec<String>, String> {
        let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
        let output = Command::new(&pkg_config)
            .args(["--cflags", "libdpdk"])
            .output()
            .map_err(|e| format!("running {pkg_config} --cflags libdpdk: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{pkg_config} --cflags libdpdk failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        // libdpdk.pc holds no quoted arguments, so whitespace splitting is exact; `-include X`
        // stays two arguments, as both clang and gcc expect.
        Ok(String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }
}
