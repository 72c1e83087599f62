use crate::{GpuModel, MilliGpu, ModelError, OrgId, ProjectId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The kind of organisation; programmes and reports group by it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum OrgClass {
    #[default]
    Academia,
    Institute,
    Startup,
    Enterprise,
    Partner,
    PublicAgency,
}

impl OrgClass {
    pub const ALL: [OrgClass; 6] = [
        OrgClass::Academia,
        OrgClass::Institute,
        OrgClass::Startup,
        OrgClass::Enterprise,
        OrgClass::Partner,
        OrgClass::PublicAgency,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            OrgClass::Academia => "academia",
            OrgClass::Institute => "institute",
            OrgClass::Startup => "startup",
            OrgClass::Enterprise => "enterprise",
            OrgClass::Partner => "partner",
            OrgClass::PublicAgency => "public-agency",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organisation {
    pub id: OrgId,
    pub name: String,
    pub class: OrgClass,
    /// ISO 3166-1 alpha-2 country of the headquarters.
    pub country: String,
    pub parent: Option<OrgId>,
}

/// A project's share of one GPU class, in the sense of Kueue's nominal quota and borrowing limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Always available to the project: reclaimed by preemption from borrowers when needed.
    pub guaranteed: MilliGpu,
    /// How much above the guarantee the project may borrow from idle capacity; `None` is unlimited.
    pub borrow_limit: Option<MilliGpu>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub org: OrgId,
    pub name: String,
    /// Per GPU class. A class without an entry has no guarantee and unlimited borrowing.
    #[serde(default)]
    pub quotas: BTreeMap<GpuModel, Quota>,
    /// Fair-share weight: the project's entitlement relative to the others.
    pub weight: u32,
}

impl Project {
    pub fn quota(&self, model: &GpuModel) -> Quota {
        self.quotas.get(model).copied().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenants {
    pub orgs: Vec<Organisation>,
    pub projects: Vec<Project>,
}

impl Tenants {
    pub fn new(orgs: Vec<Organisation>, projects: Vec<Project>) -> Result<Self, ModelError> {
        let t = Tenants { orgs, projects };
        t.validate()?;
        Ok(t)
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        let mut orgs = BTreeSet::new();
        for o in &self.orgs {
            if !orgs.insert(o.id) {
                return Err(ModelError::Duplicate {
                    field: "orgs.id",
                    kind: "organisation",
                    value: o.id.to_string(),
                });
            }
        }
        for o in &self.orgs {
            if let Some(p) = o.parent
                && !orgs.contains(&p)
            {
                return Err(ModelError::Unknown {
                    field: "orgs.parent",
                    kind: "organisation",
                    value: p.to_string(),
                });
            }
        }
        let mut projects = BTreeSet::new();
        for p in &self.projects {
            if !projects.insert(p.id) {
                return Err(ModelError::Duplicate {
                    field: "projects.id",
                    kind: "project",
                    value: p.id.to_string(),
                });
            }
            if !orgs.contains(&p.org) {
                return Err(ModelError::Unknown {
                    field: "projects.org",
                    kind: "organisation",
                    value: p.org.to_string(),
                });
            }
            if p.weight == 0 {
                return Err(ModelError::invalid(
                    "projects.weight",
                    format!(
                        "project `{}` needs a fair-share weight of at least 1",
                        p.name
                    ),
                ));
            }
        }
        Ok(())
    }
}
