//! Permission rules as pure data: what a set of grants allows.

use std::collections::BTreeSet;

/// What a role may be granted. Deciding requests is not here: it comes from stage roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, async_graphql::Enum)]
#[graphql(name = "PermissionAction")]
pub enum Action {
    /// `request.submit`: file requests.
    RequestSubmit,
    /// `request.view`: see requests (your own are always visible).
    RequestView,
    /// `audit.read`: search the audit log.
    AuditRead,
    /// `policy.manage`: edit policies, cancel any request under them.
    PolicyManage,
    /// `access.manage`: grant and revoke permissions, disable users, end sessions.
    AccessManage,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Self::RequestSubmit,
        Self::RequestView,
        Self::AuditRead,
        Self::PolicyManage,
        Self::AccessManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestSubmit => "request.submit",
            Self::RequestView => "request.view",
            Self::AuditRead => "audit.read",
            Self::PolicyManage => "policy.manage",
            Self::AccessManage => "access.manage",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == value)
    }
}

/// One grant: an action, on every policy (`policy: None`) or on one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub action: Action,
    pub policy: Option<String>,
}

/// Which policies an action reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    /// Only these policy keys; empty means none.
    Only(BTreeSet<String>),
}

impl Scope {
    pub fn covers(&self, policy: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(keys) => keys.contains(policy),
        }
    }
}

/// The effective grants of a viewer: the union over their roles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants(BTreeSet<Grant>);

impl Grants {
    pub fn new(grants: impl IntoIterator<Item = Grant>) -> Self {
        Self(grants.into_iter().collect())
    }

    /// Whether `action` is allowed on `policy`, or — for `None` — on everything.
    pub fn allows(&self, action: Action, policy: Option<&str>) -> bool {
        self.0.iter().any(|g| {
            g.action == action
                && match (&g.policy, policy) {
                    (None, _) => true,
                    (Some(granted), Some(wanted)) => granted == wanted,
                    (Some(_), None) => false,
                }
        })
    }

    pub fn scope(&self, action: Action) -> Scope {
        let mut keys = BTreeSet::new();
        for grant in self.0.iter().filter(|g| g.action == action) {
            match &grant.policy {
                None => return Scope::All,
                Some(key) => {
                    keys.insert(key.clone());
                }
            }
        }
        Scope::Only(keys)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Grant> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(action: Action, policy: Option<&str>) -> Grant {
        Grant {
            action,
            policy: policy.map(Into::into),
        }
    }

    #[test]
    fn a_scoped_grant_reaches_only_its_policy() {
        let grants = Grants::new([grant(Action::RequestView, Some("refund"))]);
        assert!(grants.allows(Action::RequestView, Some("refund")));
        assert!(!grants.allows(Action::RequestView, Some("access_grant")));
        assert!(!grants.allows(Action::RequestView, None));
        assert!(!grants.allows(Action::RequestSubmit, Some("refund")));
        assert_eq!(
            grants.scope(Action::RequestView),
            Scope::Only(["refund".to_string()].into())
        );
    }

    #[test]
    fn an_unscoped_grant_reaches_every_policy() {
        let grants = Grants::new([
            grant(Action::RequestView, Some("refund")),
            grant(Action::RequestView, None),
        ]);
        assert!(grants.allows(Action::RequestView, Some("anything")));
        assert!(grants.allows(Action::RequestView, None));
        assert_eq!(grants.scope(Action::RequestView), Scope::All);
    }

    #[test]
    fn no_grants_reach_nothing() {
        let grants = Grants::default();
        assert_eq!(
            grants.scope(Action::AuditRead),
            Scope::Only(BTreeSet::new())
        );
        assert!(!Scope::Only(BTreeSet::new()).covers("refund"));
    }
}
