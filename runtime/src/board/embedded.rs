//! The profiles in `boards/`, compiled into the binary so `--board NAME` works from any
//! directory and on a board that only received the binary.

/// (name, TOML text), in the order `sitfer` lists them.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "jetson-orin-nano",
        include_str!("../../../boards/jetson-orin-nano.toml"),
    ),
    ("jetson-nano", include_str!("../../../boards/jetson-nano.toml")),
    ("raspberry-pi-5", include_str!("../../../boards/raspberry-pi-5.toml")),
    ("x86_64-dev", include_str!("../../../boards/x86_64-dev.toml")),
];

pub fn names() -> Vec<String> {
    EMBEDDED.iter().map(|(n, _)| n.to_string()).collect()
}
