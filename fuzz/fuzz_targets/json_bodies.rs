//! Every JSON body the management API reads, from any bytes: a value or a named error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use permgate_core::service::*;

fn body<T: serde::de::DeserializeOwned>(data: &[u8]) {
    let _ = serde_json::from_slice::<T>(data);
}

fuzz_target!(|data: &[u8]| {
    body::<CreateAccount>(data);
    body::<CreateApp>(data);
    body::<AddKey>(data);
    body::<SetPlatforms>(data);
    body::<AddMember>(data);
    body::<SetProduct>(data);
    body::<GrantPermission>(data);
    body::<RevokePermission>(data);
    body::<BlockReason>(data);
    body::<SetPaidUsage>(data);
    body::<SetBusiness>(data);
    body::<RemoveBusiness>(data);
    body::<ConnectChannel>(data);
    body::<SetConsentItem>(data);
    body::<ActOnRequest>(data);
    body::<ListRequests>(data);
    body::<Apply>(data);
    body::<permgate_core::model::TalkChannel>(data);
});
