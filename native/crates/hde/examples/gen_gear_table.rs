//! Prints `libs/hde/src/gear-table.ts`: the fastcdc v2020 `GEAR` and `GEAR_LS` tables (seed 0)
//! and cut `MASKS`, split into 32-bit halves, so the TypeScript chunker cuts exactly like the
//! native one.
//!
//! Run from the repository root:
//! `cargo run --manifest-path native/Cargo.toml -p dwcp-hde --example gen_gear_table > libs/hde/src/gear-table.ts`

use std::fmt::Write as _;

use fastcdc::v2020::{get_gear_with_seed, MASKS};

fn main() {
    let (gear, gear_ls) = get_gear_with_seed(0);
    let mut out = String::new();
    out.push_str(
        "// GENERATED FILE, do not edit. Regenerate from the repository root with:\n\
         //   cargo run --manifest-path native/Cargo.toml -p dwcp-hde --example gen_gear_table \\\n\
         //     > libs/hde/src/gear-table.ts\n\
         //\n\
         // fastcdc 5 v2020 gear tables (`get_gear_with_seed(0)`) and `MASKS`, each 64-bit entry\n\
         // split into its high and low 32-bit halves so the JS hot loop needs no BigInt.\n",
    );
    assert!(
        gear.len() == 256 && gear_ls.len() == 256,
        "gear tables must have 256 entries"
    );
    emit_halves(&mut out, "GEAR", &gear);
    emit_halves(&mut out, "GEAR_LS", &gear_ls);
    emit_halves(&mut out, "MASKS", &MASKS);
    print!("{out}");
}

/// Emits `{name}_HI` and `{name}_LO`, the high and low 32 bits of each entry of `table`.
fn emit_halves(out: &mut String, name: &str, table: &[u64]) {
    for (suffix, shift) in [("HI", 32), ("LO", 0)] {
        let _ = writeln!(
            out,
            "\nexport const {name}_{suffix}: Uint32Array = Uint32Array.of("
        );
        for row in table.chunks(8) {
            let halves: Vec<String> = row
                .iter()
                .map(|v| format!("0x{:08x}", (v >> shift) & 0xffff_ffff))
                .collect();
            let _ = writeln!(out, "  {},", halves.join(", "));
        }
        out.push_str(");\n");
    }
}
