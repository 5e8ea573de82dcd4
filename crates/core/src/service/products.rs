//! Products: switch a product on or off for one app. APIs of an inactive product answer -3.

use serde::{Deserialize, Serialize};

use super::{Access, Actor, Services};
use crate::audit::NewAuditEvent;
use crate::catalog::Activation;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{AppId, AppRecord};

/// `PUT /v1/apps/{id}/products/{product}`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetProduct {
    pub activated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ProductState {
    pub product: String,
    pub activated: bool,
}

impl Services {
    pub(super) fn product_states(&self, record: &AppRecord) -> Vec<ProductState> {
        let snapshot = self.snapshot.read();
        snapshot
            .catalog()
            .products
            .iter()
            .map(|p| ProductState {
                product: p.id.clone(),
                activated: record
                    .products
                    .iter()
                    .find(|(id, _)| *id == p.id)
                    .map_or(p.activation == Activation::DefaultOn, |(_, on)| *on),
            })
            .collect()
    }

    /// The Kakao Map rule: when the app's owner already has another app with `product` on, this
    /// app needs `permission` to switch it on too.
    fn check_further_app(&self, record: &AppRecord, product: &str, permission: &str) -> ServiceResult<()> {
        let owner = record.app.owner;
        let mut others = Vec::new();
        for id in self.store.app_ids_of_member(owner)? {
            if id == record.app.id {
                continue;
            }
            if let Some(other) = self.store.app_record(id)?
                && other.app.owner == owner
                && other.products.iter().any(|(p, on)| p == product && *on)
            {
                others.push(id.to_string());
            }
        }
        if others.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let snapshot = self.snapshot.read();
        let held = snapshot
            .catalog()
            .permission_index(permission)
            .is_some_and(|p| snapshot.app(record.app.id).is_some_and(|a| a.holds(p, None, now)));
        if held {
            return Ok(());
        }
        Err(ServiceError::Forbidden(format!(
            "the owner already has `{product}` on in app {}; activating it on a further app needs the `{permission}` permission (apply at /v1/apps/{}/permission-requests)",
            others.join(", "),
            record.app.id
        )))
    }

    pub fn set_product(
        &self,
        actor: &Actor,
        app: AppId,
        product: &str,
        input: SetProduct,
    ) -> ServiceResult<ProductState> {
        let record = self.app_for(actor, app, Access::Edit)?;
        let further_app_permission = match self.snapshot.read().catalog().product(product) {
            None => return Err(ServiceError::NotFound(format!("the catalog has no product `{product}`"))),
            Some(p) => p.further_app_permission.clone(),
        };
        if input.activated
            && let Some(permission) = further_app_permission
        {
            self.check_further_app(&record, product, &permission)?;
        }
        let before = self.product_states(&record).into_iter().find(|p| p.product == product).map(|p| p.activated);
        let audit =
            NewAuditEvent::new(self.clock.now(), Some(actor.account.id), "product.set", format!("product:{product}"))
                .app(app)
                .before(before)
                .after(input.activated);
        self.store.set_product(app, product, input.activated, &audit)?;
        self.settle(app);
        Ok(ProductState { product: product.to_owned(), activated: input.activated })
    }
}
