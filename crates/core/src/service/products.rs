//! Products: switch a product on or off for one app. APIs of an inactive product answer -3.

use serde::{Deserialize, Serialize};

use super::{Access, Actor, Services};
use crate::audit::NewAuditEvent;
use crate::catalog::Activation;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{AppId, AppRecord};

/// `PUT /v1/apps/{id}/products/{product}`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetProduct {
    pub activated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

    pub fn set_product(
        &self,
        actor: &Actor,
        app: AppId,
        product: &str,
        input: SetProduct,
    ) -> ServiceResult<ProductState> {
        let record = self.app_for(actor, app, Access::Edit)?;
        if self.snapshot.read().catalog().product(product).is_none() {
            return Err(ServiceError::NotFound(format!("the catalog has no product `{product}`")));
        }
        let before = self.product_states(&record).into_iter().find(|p| p.product == product).map(|p| p.activated);
        let audit =
            NewAuditEvent::new(self.clock.now(), Some(actor.account.id), "product.set", format!("product:{product}"))
                .app(app)
                .before(before)
                .after(input.activated);
        self.store.set_product(app, product, input.activated, &audit)?;
        self.refresh(app)?;
        Ok(ProductState { product: product.to_owned(), activated: input.activated })
    }
}
