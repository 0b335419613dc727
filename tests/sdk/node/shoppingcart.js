// The shopping cart (spec §10) as a user function on the npm Cloudstate SDK
// (cloudstate@0.0.3), for Massa's end-to-end tests: event sourced, with a
// snapshot every 5 events. Messages come from Massa's own protos
// (proto/example/shoppingcart); setup.sh compiles user-function.desc.
//
// Run from the setup directory: PORT=8080 node shoppingcart.js
const path = require("path");
const EventSourced = require("cloudstate").EventSourced;

const protoRoot = process.env.MASSA_PROTO || path.join(__dirname, "proto");
const cart = new EventSourced(
  ["example/shoppingcart/shoppingcart.proto", "example/shoppingcart/persistence/domain.proto"],
  "com.example.shoppingcart.ShoppingCart",
  { persistenceId: "shopping-cart", snapshotEvery: 5, includeDirs: [protoRoot] }
);

const domain = "com.example.shoppingcart.persistence.";
const ItemAdded = cart.lookupType(domain + "ItemAdded");
const ItemRemoved = cart.lookupType(domain + "ItemRemoved");
const State = cart.lookupType(domain + "Cart");

cart.setInitial(() => State.create({ items: [] }));

// Commands: validate, then emit; the event handlers below change the state.
const commands = {
  AddItem(add, state, ctx) {
    if (add.quantity < 1) {
      ctx.fail(`Cannot add negative quantity to item ${add.productId}`);
      return undefined;
    }
    ctx.emit(ItemAdded.create({ item: { productId: add.productId, name: add.name, quantity: add.quantity } }));
    return {};
  },
  RemoveItem(remove, state, ctx) {
    if (!state.items.some(line => line.productId === remove.productId)) {
      ctx.fail(`Item ${remove.productId} not in cart`);
      return undefined;
    }
    ctx.emit(ItemRemoved.create({ productId: remove.productId }));
    return {};
  },
  GetCart(request, state) {
    return { items: state.items.map(line => ({ productId: line.productId, name: line.name, quantity: line.quantity })) };
  }
};

const events = {
  ItemAdded(added, state) {
    const line = state.items.find(l => l.productId === added.item.productId);
    if (line) {
      line.quantity += added.item.quantity;
    } else {
      state.items.push(added.item);
    }
    return state;
  },
  ItemRemoved(removed, state) {
    state.items = state.items.filter(l => l.productId !== removed.productId);
    return state;
  }
};

cart.setBehavior(() => ({ commandHandlers: commands, eventHandlers: events }));

cart.start({ bindAddress: "127.0.0.1", bindPort: parseInt(process.env.PORT || "8080", 10) });
