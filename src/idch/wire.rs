//! JSON shapes of the IDCloudHost API that the client reads (PROTOCOLS.md section E).
//! Unknown fields are ignored; fields the API may leave out or send empty are optional.

use serde::{Deserialize, Deserializer, Serialize};

/// A VM object as returned by list, get and clone. Only the fields the autoscaler uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    pub uuid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    /// Missing, null or empty until the VM has its address.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub private_ipv4: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`, no zone.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub created_at: Option<String>,
}

impl Vm {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }
}

/// A floating IP object (`network/ip_addresses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingIp {
    pub address: String,
    #[serde(default)]
    pub assigned_to: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// One row of `GET charging/usage?billing_account_id=B` (PROTOCOLS.md E.2.6): what one resource
/// (`owner_uuid`, a VM's uuid) has cost this month at one price. A VM may have several rows (the
/// simulator splits running and stopped hours, as the invoices do; UNVERIFIED for the real API), so
/// a VM's cost so far is the sum of its rows' `cost`. Numbers may also come as strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargingRow {
    pub owner_uuid: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, deserialize_with = "number")]
    pub price: f64,
    /// `h`: `price` is per hour.
    #[serde(default)]
    pub price_unit: String,
    #[serde(default, deserialize_with = "number")]
    pub hours: f64,
    #[serde(default, deserialize_with = "number")]
    pub cost: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub uptime_types: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub configurations: Vec<ChargingConfiguration>,
}

/// The resource's shape in a [`ChargingRow`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargingConfiguration {
    #[serde(default)]
    pub vm_name: String,
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default, rename = "ram_MB")]
    pub ram_mb: Option<u32>,
    #[serde(default, rename = "disk_size_GB")]
    pub disk_size_gb: Option<u32>,
}

/// A number, or a string holding one (null: 0).
fn number<'de, D>(d: D) -> Result<f64, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(f64),
        Text(String),
    }
    match Option::<NumberOrText>::deserialize(d)? {
        None => Ok(0.0),
        Some(NumberOrText::Number(n)) => Ok(n),
        Some(NumberOrText::Text(t)) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("`{t}` is not a number"))),
    }
}

/// The API's error body: `{"errors": {"Error": "No such virtual machine exists. <uuid>"}}`.
/// Other shapes are tolerated; [`error_message`] extracts the best text it can.
pub fn error_message(body: &str) -> String {
    let text = body.trim();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        if let Some(errors) = value.get("errors") {
            if let Some(msg) = errors.get("Error").and_then(|v| v.as_str()) {
                return msg.to_string();
            }
            if let Some(obj) = errors.as_object() {
                let parts: Vec<String> = obj
                    .iter()
                    .map(|(k, v)| match v.as_str() {
                        Some(s) => format!("{k}: {s}"),
                        None => format!("{k}: {v}"),
                    })
                    .collect();
                if !parts.is_empty() {
                    return parts.join("; ");
                }
            }
        }
        for key in ["message", "error", "detail"] {
            if let Some(msg) = value.get(key).and_then(|v| v.as_str()) {
                return msg.to_string();
            }
        }
    }
    let mut s: String = text.chars().take(200).collect();
    if s.is_empty() {
        s = "(empty body)".into();
    }
    s
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn empty_as_none<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_ignores_unknown_fields_and_empty_ip() {
        let vm: Vm = serde_json::from_str(
            r#"{"uuid":"u1","name":"n","status":"running","private_ipv4":"","created_at":"2018-02-22 14:24:30","id":11,"vcpu":2,"storage":[{"a":1}],"tags":null}"#,
        )
        .unwrap();
        assert_eq!(vm.private_ipv4, None);
        assert!(vm.is_running());
        let vm: Vm = serde_json::from_str(r#"{"uuid":"u2","status":null}"#).unwrap();
        assert_eq!(vm.status, "");
        assert!(!vm.is_running());
    }

    #[test]
    fn charging_rows_read_numbers_and_numeric_strings() {
        let row: ChargingRow = serde_json::from_str(
            r#"{"owner_uuid":"u","description":"vm, 2 CPUs","price":"0.02882","price_unit":"h","hours":3.0,"cost":0.08646,"uptime_types":["VM_RUNNING"],"configurations":[{"vm_name":"vm","cpus":2,"ram_MB":2048,"disk_size_GB":20,"os_name":"ubuntu"}],"user_id":8}"#,
        )
        .unwrap();
        assert_eq!(row.price, 0.02882);
        assert_eq!(row.hours, 3.0);
        assert_eq!(row.configurations[0].ram_mb, Some(2048));
        let bare: ChargingRow =
            serde_json::from_str(r#"{"owner_uuid":"u","cost":null,"configurations":null}"#)
                .unwrap();
        assert_eq!(bare.cost, 0.0);
        assert!(bare.configurations.is_empty());
        assert!(serde_json::from_str::<ChargingRow>(r#"{"owner_uuid":"u","cost":"x"}"#).is_err());
    }

    #[test]
    fn error_message_shapes() {
        assert_eq!(
            error_message(r#"{"errors": {"Error": "No such virtual machine exists. x"}}"#),
            "No such virtual machine exists. x"
        );
        assert_eq!(error_message(r#"{"message":"nope"}"#), "nope");
        assert_eq!(error_message(""), "(empty body)");
        assert_eq!(
            error_message("<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }
}
