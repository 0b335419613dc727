//! The example function's shopping carts, called through the proxy.

use massa::grpc::{encode_prost, Status};
use massa::proto::com::example::shoppingcart::{AddLineItem, Cart, GetShoppingCart};
use prost::Message;

use super::Client;

/// The event-sourced cart.
pub const CART: &str = "com.example.shoppingcart.ShoppingCart";
/// The value-entity cart.
pub const VALUE_CART: &str = "com.example.valueentity.shoppingcart.ShoppingCart";

/// A unary call; the reply's bytes (empty if none came).
pub async fn unary(c: &Client, service: &str, method: &str, request: &impl Message) -> Result<Vec<u8>, Status> {
    let (_, msgs, status) = c.call(&format!("/{service}/{method}"), None, vec![encode_prost(request)]).await;
    status?;
    Ok(msgs.into_iter().next().map(|m| m.to_vec()).unwrap_or_default())
}

pub async fn add(c: &Client, service: &str, user: &str, product: &str, quantity: i32, name: &str) -> Result<(), Status> {
    let req = AddLineItem { user_id: user.into(), product_id: product.into(), name: name.into(), quantity };
    unary(c, service, "AddItem", &req).await.map(drop)
}

/// The cart as `product xquantity` strings.
pub async fn cart(c: &Client, service: &str, user: &str) -> Result<Vec<String>, Status> {
    let bytes = unary(c, service, "GetCart", &GetShoppingCart { user_id: user.into() }).await?;
    let cart = Cart::decode(bytes.as_slice()).unwrap();
    Ok(cart.items.iter().map(|i| format!("{} x{}", i.product_id, i.quantity)).collect())
}
