//! What each of byos's background tasks may do. An [`Actor`] is a caller of its own, and the door
//! grants it exactly the actions listed here, at any scope, and nothing else: a task that needs
//! more must say so here, where a reviewer sees it.

use byos_core::Actor;

/// The action patterns `actor` is granted.
pub fn grants(actor: Actor) -> &'static [&'static str] {
    match actor {
        Actor::KeyRotation => &["Microsoft.KeyVault/vaults/keys/rotate/action"],
        Actor::SoftDeletePurge => &[
            "Microsoft.KeyVault/vaults/keys/purge/action",
            "Microsoft.KeyVault/locations/deletedVaults/purge/action",
            "Microsoft.CognitiveServices/locations/resourceGroups/deletedAccounts/delete",
        ],
        // Staged blocks past their lifetime and objects no record references are the only data it
        // removes; it never reads.
        Actor::BlobHousekeeping => &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"],
        // Records the key version an account's KEK was re-wrapped with (the unwrap and wrap run as the
        // account's own managed identity).
        Actor::CmkRotationWatch => &["Microsoft.Storage/storageAccounts/write"],
        // Deletes transcriptions and batch syntheses whose time to live has passed and endpoint logs
        // past their retention (the files in the customer's storage are deleted by the account's own
        // identity, as every artifact of the account).
        Actor::SpeechRetention => &[
            "Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/transcriptions/delete",
            "Microsoft.CognitiveServices/accounts/BatchTextToSpeech/batchsyntheses/delete",
            "Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/endpoints/files/delete",
        ],
    }
}
