//! The allocator of every binary built with the server (the server, its tests and benchmarks):
//! mimalloc. With glibc's `malloc`, allocating and freeing took about a third of the machine's
//! CPU while the worker captured policies (parsing and writing Graph's JSON); with mimalloc the
//! worker captures about half as many again per second and the server answers 11–70 % more
//! polls, run for run (`perf` and the benchmarks, in `docs/benchmarks.md`).
//!
//! Built with its arenas committed lazily (`.cargo/config.toml`), so that memory the server frees
//! goes back to the system: committed eagerly, mimalloc's default on Linux, an idle server kept
//! 40 MB of RSS instead of 27.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(test)]
mod tests {
    /// `mi_option_arena_eager_commit` in mimalloc 3's `mi_option_t` (`include/mimalloc.h` of the
    /// version libmimalloc-sys builds; its Rust bindings do not name it).
    const ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

    unsafe extern "C" {
        fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    }

    #[test]
    fn arenas_are_committed_lazily() {
        // SAFETY: reads mimalloc's table of options at a valid index.
        let eager = unsafe { mi_option_get(ARENA_EAGER_COMMIT) };
        assert_eq!(
            eager, 0,
            "built without .cargo/config.toml's CFLAGS for mimalloc"
        );
    }
}
