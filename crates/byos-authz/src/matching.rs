//! Azure's action patterns: `*` matches any run of characters (slashes included), case-insensitively.

/// A pattern folded to lowercase once, when its role is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(text: &str) -> Self {
        Pattern(text.to_ascii_lowercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the already-lowercased `action` matches.
    pub fn matches(&self, action: &str) -> bool {
        glob_match(self.0.as_bytes(), action.as_bytes())
    }
}

/// Iterative glob with backtracking to the last star: linear in practice for Azure's patterns.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_patterns() {
        let table = [
            ("*", "microsoft.resources/subscriptions/resourcegroups/write", true),
            ("*/read", "microsoft.resources/subscriptions/resourcegroups/read", true),
            ("*/read", "microsoft.resources/subscriptions/resourcegroups/write", false),
            ("Microsoft.Authorization/*/Write", "microsoft.authorization/roleassignments/write", true),
            ("Microsoft.Authorization/*/Write", "microsoft.authorization/roleassignments/read", false),
            ("Microsoft.KeyVault/vaults/*/read", "microsoft.keyvault/vaults/keys/read", true),
            ("Microsoft.KeyVault/vaults/*/read", "microsoft.keyvault/vaults/read", false),
            ("Microsoft.Storage/*", "microsoft.storage/storageaccounts/read", true),
            ("Microsoft.Storage/*", "microsoft.storagesync/x/read", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ];
        for (pattern, action, expected) in table {
            assert_eq!(Pattern::new(pattern).matches(action), expected, "{pattern} vs {action}");
        }
    }
}
