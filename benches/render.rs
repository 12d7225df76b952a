//! How long the server takes to turn a large stored version into the settings page: a settings
//! catalog policy with 2,000 settings (choice, simple and group collection settings, each with
//! its display name), parsed from its stored JSON, read as rows (`domain::snapshot::readable`),
//! rendered to HTML by the page's component and serialized for hydration, as the version page
//! does. Pure CPU: no database or network.
//!
//! `cargo bench --bench render --profile dev` (the debug build command 1 serves) or
//! `cargo bench --bench render` (release). Prints the median and p95 of 30 samples per step.

use std::time::{Duration, Instant};

use leptos::prelude::*;
use serde_json::{json, Value};
use tenantatlas::components::ReadableSections;
use tenantatlas::domain::snapshot::{
    readable, CaptureFormat, CapturedPolicy, PolicyType, SettingNames,
};

const SETTINGS: usize = 2_000;
const SAMPLES: usize = 30;

/// A settings catalog payload with `n` settings: a third choice settings, a third simple
/// settings, a third group collections with two children each; and their definitions' names.
fn large_policy(n: usize) -> Value {
    let settings: Vec<Value> = (0..n)
        .map(|i| {
            let id = format!("device_vendor_msft_policy_config_area{}_setting{i}", i % 40);
            let instance = match i % 3 {
                0 => json!({
                    "@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance",
                    "settingDefinitionId": id,
                    "choiceSettingValue": {"value": format!("{id}_1"), "children": []}
                }),
                1 => json!({
                    "@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingInstance",
                    "settingDefinitionId": id,
                    "simpleSettingValue": {
                        "@odata.type": "#microsoft.graph.deviceManagementConfigurationIntegerSettingValue",
                        "value": i
                    }
                }),
                _ => json!({
                    "@odata.type": "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance",
                    "settingDefinitionId": id,
                    "groupSettingCollectionValue": [{"children": [
                        {
                            "@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingInstance",
                            "settingDefinitionId": format!("{id}_name"),
                            "simpleSettingValue": {
                                "@odata.type": "#microsoft.graph.deviceManagementConfigurationStringSettingValue",
                                "value": format!("value {i}")
                            }
                        },
                        {
                            "@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance",
                            "settingDefinitionId": format!("{id}_mode"),
                            "choiceSettingValue": {"value": format!("{id}_mode_0"), "children": []}
                        }
                    ]}]
                }),
            };
            json!({
                "id": i.to_string(),
                "settingInstance": instance,
                "settingDefinitions": [{
                    "id": id,
                    "displayName": format!("Setting {i} of area {}", i % 40),
                    "options": [{"itemId": format!("{id}_1"), "displayName": "Enabled"}]
                }]
            })
        })
        .collect();
    json!({
        "policyType": "settings_catalog",
        "policy": {
            "name": "Large baseline",
            "platforms": "windows10",
            "technologies": "mdm",
            "roleScopeTagIds": ["0"]
        },
        "settings": settings,
        "assignments": []
    })
}

fn measure(label: &str, mut step: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let started = Instant::now();
            step();
            started.elapsed()
        })
        .collect();
    samples.sort();
    let median = samples[SAMPLES / 2];
    let p95 = samples[SAMPLES * 95 / 100];
    println!("{label:<44} median {median:>10.2?}   p95 {p95:>10.2?}");
    median
}

fn main() {
    let stored = large_policy(SETTINGS).to_string();
    println!(
        "settings catalog policy, {SETTINGS} settings, {} kB stored; {SAMPLES} samples each",
        stored.len() / 1024
    );
    let mut total = Duration::ZERO;
    total += measure("parse the stored JSON", || {
        std::hint::black_box(serde_json::from_str::<Value>(&stored).unwrap());
    });
    let payload: Value = serde_json::from_str(&stored).unwrap();
    let names = SettingNames::from_payload(&payload);
    let captured = CapturedPolicy::new(PolicyType::SettingsCatalog, CaptureFormat::V1, &payload);
    total += measure("read as rows (readable)", || {
        std::hint::black_box(readable(&captured, &names));
    });
    let rows = readable(&captured, &names);
    let row_count: usize = rows.sections.iter().map(|s| s.rows.len()).sum();
    total += measure("render the rows to HTML (ReadableSections)", || {
        let owner = Owner::new();
        let html = owner.with(|| {
            let sections = rows.sections.clone();
            view! { <ReadableSections sections /> }.to_html()
        });
        std::hint::black_box(html);
    });
    total += measure("serialize the rows for hydration", || {
        std::hint::black_box(serde_json::to_string(&rows).unwrap());
    });
    println!("{row_count} rows; the four steps together: {total:.2?} (medians)");
}
