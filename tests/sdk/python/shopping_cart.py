"""The shopping cart (spec §10) as a user function on the PyPI Cloudstate
SDK (cloudstate==0.1.1), for Massa's end-to-end tests. Messages are
generated from Massa's own protos (proto/example/shoppingcart) by setup.sh.

Run: PYTHONPATH=<gen dir> PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python \
     HOST=127.0.0.1 PORT=8080 python shopping_cart.py
"""
from google.protobuf.empty_pb2 import Empty

from cloudstate.cloudstate import CloudState
from cloudstate.event_sourced_context import EventSourcedCommandContext
from cloudstate.event_sourced_entity import EventSourcedEntity

from example.shoppingcart import shoppingcart_pb2 as api
from example.shoppingcart.persistence import domain_pb2 as domain


def empty_cart(entity_id: str):
    return {}


cart = EventSourcedEntity(
    api.DESCRIPTOR.services_by_name["ShoppingCart"],
    [api.DESCRIPTOR, domain.DESCRIPTOR],
    empty_cart,
    persistence_id="shopping-cart",
)


@cart.event_handler(domain.ItemAdded)
def item_added(state: dict, event: domain.ItemAdded):
    line = state.get(event.item.productId)
    quantity = event.item.quantity + (line.quantity if line else 0)
    state[event.item.productId] = api.LineItem(product_id=event.item.productId, name=event.item.name, quantity=quantity)
    return state


@cart.event_handler(domain.ItemRemoved)
def item_removed(state: dict, event: domain.ItemRemoved):
    state.pop(event.productId, None)
    return state


@cart.command_handler("GetCart")
def get_cart(state: dict):
    return api.Cart(items=list(state.values()))


@cart.command_handler("AddItem")
def add_item(item: api.AddLineItem, ctx: EventSourcedCommandContext):
    if item.quantity <= 0:
        ctx.fail("Cannot add negative quantity of to item {}".format(item.product_id))
        return None
    line = domain.LineItem(productId=item.product_id, name=item.name, quantity=item.quantity)
    ctx.emit(domain.ItemAdded(item=line))
    return Empty()


@cart.command_handler("RemoveItem")
def remove_item(state: dict, item: api.RemoveLineItem, ctx: EventSourcedCommandContext):
    if item.product_id not in state:
        ctx.fail("Cannot remove item {} because it is not in the cart.".format(item.product_id))
        return None
    ctx.emit(domain.ItemRemoved(productId=item.product_id))
    return Empty()


if __name__ == "__main__":
    CloudState().register_event_sourced_entity(cart).start()
