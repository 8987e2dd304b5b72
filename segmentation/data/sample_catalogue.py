"""The sample shop's catalogue: products in categories and each order's items (the Olist persona files)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# The product catalogue: Olist's own category names (Portuguese, with the English translation
# file's names), each a few dozen products; a few products have no category, as in Olist.
CATEGORIES = (
    ("cama_mesa_banho", "bed_bath_table"),
    ("beleza_saude", "health_beauty"),
    ("esporte_lazer", "sports_leisure"),
    ("moveis_decoracao", "furniture_decor"),
    ("informatica_acessorios", "computers_accessories"),
    ("utilidades_domesticas", "housewares"),
    ("relogios_presentes", "watches_gifts"),
    ("telefonia", "telephony"),
    ("ferramentas_jardim", "garden_tools"),
    ("automotivo", "auto"),
    ("brinquedos", "toys"),
    ("cool_stuff", "cool_stuff"),
    ("perfumaria", "perfumery"),
    ("bebes", "baby"),
    ("eletronicos", "electronics"),
    ("papelaria", "stationery"),
    ("fashion_bolsas_e_acessorios", "fashion_bags_accessories"),
    ("pet_shop", "pet_shop"),
    ("moveis_escritorio", "office_furniture"),
    ("consoles_games", "consoles_games"),
)
CATEGORY_P = np.array([11, 10, 9, 8, 7, 7, 6, 5, 4, 4, 4, 4, 3, 3, 3, 3, 3, 2, 2, 2], dtype=np.float64)
REPEAT_TASTE = (
    "cama_mesa_banho",
    "beleza_saude",
    "utilidades_domesticas",
    "perfumaria",
    "pet_shop",
)  # returning buyers
RICH_TASTE = ("relogios_presentes", "informatica_acessorios", "eletronicos", "moveis_escritorio", "consoles_games")
PRODUCTS_PER_CATEGORY = 40
UNCATEGORISED_PRODUCTS = 12
FAVOURITE_SHARE = 0.65  # items from the customer's favourite category; the rest by popularity
FREIGHT_SHARE = 0.15  # of the paid value

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """n random 32-character hex ids, vectorised."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    chars = np.empty((n, 32), dtype=np.uint8)
    chars[:, 0::2] = _HEX[raw >> 4]
    chars[:, 1::2] = _HEX[raw & 15]
    return pa.array(chars.view("S32").ravel(), type=pa.binary()).cast(pa.string())


def catalogue(seed: int) -> dict[str, pa.Table]:
    """The products and the category translation (the same for every chunk of a sample)."""
    rng = np.random.default_rng([seed, 7])
    n = len(CATEGORIES) * PRODUCTS_PER_CATEGORY + UNCATEGORISED_PRODUCTS
    category = [pt for pt, _ in CATEGORIES for _ in range(PRODUCTS_PER_CATEGORY)] + [None] * UNCATEGORISED_PRODUCTS
    return {
        "products": pa.table(
            {
                "product_id": _hex_ids(rng, n),
                "product_category_name": pa.array(category, type=pa.string()),
                "product_weight_g": pa.array(rng.integers(50, 20_000, size=n)),
            }
        ),
        "translation": pa.table(
            {
                "product_category_name": pa.array([pt for pt, _ in CATEGORIES]),
                "product_category_name_english": pa.array([en for _, en in CATEGORIES]),
            }
        ),
    }


def _items(
    rng: np.random.Generator,
    products: pa.Table,
    order_ids: pa.Array,
    owner: np.ndarray,
    orders_per_person: np.ndarray,
    taste: np.ndarray,
    value: np.ndarray,
) -> pa.Table:
    """Order items: returning buyers lean to household and beauty, big spenders to watches and
    electronics; most orders hold one item, their prices (and freight) add up to what was paid."""
    n_people, n_orders, n_cat = len(orders_per_person), len(owner), len(CATEGORIES)
    names = [pt for pt, _ in CATEGORIES]
    base = CATEGORY_P / CATEGORY_P.sum()
    weight = np.tile(base, (n_people, 1))
    repeat_cols = np.array([names.index(c) for c in REPEAT_TASTE])
    rich_cols = np.array([names.index(c) for c in RICH_TASTE])
    weight[np.ix_(np.flatnonzero(orders_per_person > 1), repeat_cols)] *= 4.0
    rich = taste[np.cumsum(orders_per_person) - orders_per_person] > 1.3  # taste is per person
    weight[np.ix_(np.flatnonzero(rich), rich_cols)] *= 4.0
    cum = np.cumsum(weight / weight.sum(axis=1, keepdims=True), axis=1)
    favourite = np.minimum((cum < rng.random((n_people, 1))).sum(axis=1), n_cat - 1)
    per_order = 1 + np.where(rng.random(n_orders) < 0.1, rng.geometric(0.6, size=n_orders), 0)
    item_order = np.repeat(np.arange(n_orders), per_order)
    cat = np.where(
        rng.random(len(item_order)) < FAVOURITE_SHARE,
        favourite[owner[item_order]],
        rng.choice(n_cat, size=len(item_order), p=base),
    )
    product = cat * PRODUCTS_PER_CATEGORY + rng.integers(0, PRODUCTS_PER_CATEGORY, size=len(item_order))
    stray = rng.random(len(item_order)) < 0.01
    product[stray] = len(CATEGORIES) * PRODUCTS_PER_CATEGORY + rng.integers(0, UNCATEGORISED_PRODUCTS, int(stray.sum()))
    cents = np.round(value * 100).astype(np.int64)[item_order]
    share = rng.random(len(item_order)) + 0.3
    share /= np.bincount(item_order, share, minlength=n_orders)[item_order]
    price = np.round(cents * share * (1 - FREIGHT_SHARE)) / 100.0
    freight = np.round(cents * share * FREIGHT_SHARE) / 100.0
    starts = np.cumsum(per_order) - per_order
    return pa.table(
        {
            "order_id": order_ids.take(pa.array(item_order)),
            "order_item_id": pa.array(np.arange(len(item_order)) - np.repeat(starts, per_order) + 1),
            "product_id": products.column("product_id").take(pa.array(product)),
            "price": pa.array(price),
            "freight_value": pa.array(freight),
        }
    )
