//! `tenantatlas-wasm-split <input.wasm> <pkg dir> <output name>`: splits cargo's hydrate wasm at
//! Leptos' `#[lazy]` functions (lazy routes) into
//! - `<pkg dir>/<output name>_split.wasm`, the main module, for wasm-bindgen;
//! - one `split_*.wasm` per lazy function and `chunk_*.wasm` for code several of them share;
//! - `__wasm_split.______________________.js`, the loader the main module imports (Leptos' macros
//!   name it so; `build.sh` keeps the names and names the bundle's folder after its content);
//! - `__wasm_split_manifest.json`, which chunks each lazy function needs, so that a page
//!   rendered on the server can preload its chunks (Leptos' `HydrationScripts` reads it).
//!
//! Prints the written chunk files, one per line; `--version` prints the tool's version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The loader's name as Leptos' `#[lazy]` expansion imports it.
const LINK_NAME: &str = "./__wasm_split.______________________.js";
const MANIFEST: &str = "__wasm_split_manifest.json";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args == ["--version"] {
        // build.sh records it with the bundle, so a new splitter rebuilds the bundle.
        println!(
            "{} {} (wasm_split_cli_support 0.2.4)",
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    let [input, pkg, name] = args.as_slice() else {
        eprintln!("usage: tenantatlas-wasm-split <input.wasm> <pkg dir> <output name>");
        return ExitCode::from(2);
    };
    match split(Path::new(input), Path::new(pkg), name) {
        Ok(chunks) => {
            for chunk in chunks {
                println!("{}", chunk.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("wasm split failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn split(input: &Path, pkg: &Path, name: &str) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let wasm = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
    std::fs::create_dir_all(pkg)?;
    let main_out = pkg.join(format!("{name}_split.wasm"));
    // The chunks' loader imports the main module's JS glue, which sits beside it.
    let main_module = format!("./{name}.js");
    let mut options = wasm_split_cli_support::Options::new(&wasm);
    options.output_dir = pkg;
    options.main_out_path = &main_out;
    options.main_module = &main_module;
    options.link_name = LINK_NAME;
    let split = wasm_split_cli_support::transform(options).map_err(|e| format!("{e:#}"))?;
    // Sorted: the bundle's folder is named after its files' content, so the same input must write
    // the same bytes (the splitter's map iterates in a random order).
    let prefetch: BTreeMap<_, _> = split.prefetch_map.into_iter().collect();
    let manifest = serde_json::to_string_pretty(&prefetch)?;
    std::fs::write(pkg.join(MANIFEST), manifest)?;
    Ok(split.split_modules)
}
