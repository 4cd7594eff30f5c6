"""The retail star schema: pure builders, one per gold table (see ``configs/retail/gold.yaml``).

Each keyword parameter names an input table (gold if built earlier, else silver);
the framework in ``lakehouse.gold`` resolves, calls and publishes.
"""

from __future__ import annotations

import polars as pl

from lakehouse.gold import (
    date_dimension,
    point_in_time,
    surrogate_key,
    version_key,
    with_inferred_members,
)

SCD2_COLUMNS = ["valid_from", "valid_to", "is_current", "version"]


def _date_sk(col: str) -> pl.Expr:
    return pl.col(col).dt.strftime("%Y%m%d").cast(pl.Int32)


def dim_date(*, orders: pl.LazyFrame) -> pl.LazyFrame:
    """Calendar from the first order to a year past the last (forecasts need future days).

    Bounded by the data, not the run date, so rerunning an old day rebuilds the same table.
    """
    bounds = orders.select(
        pl.col("ordered_at").min().dt.date().alias("lo"),
        pl.col("ordered_at").max().dt.date().dt.offset_by("1y").alias("hi"),
    )
    return date_dimension(bounds, country="FR")


def dim_warehouse(*, warehouses: pl.LazyFrame) -> pl.LazyFrame:
    return warehouses.select(surrogate_key("warehouse_id").alias("warehouse_sk"), "warehouse_id", "name",
                             "city", "region").sort("warehouse_id")


def dim_supplier(*, suppliers: pl.LazyFrame) -> pl.LazyFrame:
    """Suppliers; one delisted from the ERP shows a deleted version until it is listed again."""
    return suppliers.select(version_key("supplier_id").alias("supplier_sk"),
                            "supplier_id", "name", "country", "is_deleted", *SCD2_COLUMNS)


def dim_product(*, products: pl.LazyFrame, order_lines: pl.LazyFrame,
                inventory_counts: pl.LazyFrame) -> pl.LazyFrame:
    """Product versions, plus inferred members for SKUs sold or counted before their record arrived."""
    versions = products.select(version_key("product_id").alias("product_sk"), "product_id",
                               "name", "category", "supplier_id", "unit_price", "is_discontinued",
                               *SCD2_COLUMNS)
    return with_inferred_members(versions, [order_lines, inventory_counts], key="product_id",
                                 sk="product_sk")


def dim_customer(*, customers: pl.LazyFrame, orders: pl.LazyFrame) -> pl.LazyFrame:
    """Customer versions; a closed account is a version with ``is_deleted``, a reopened one a new one."""
    versions = customers.select(version_key("customer_id").alias("customer_sk"),
                                "customer_id", "name", "segment", "city", "is_deleted", *SCD2_COLUMNS)
    return with_inferred_members(versions, [orders], key="customer_id", sk="customer_sk")


def fct_order_lines(*, order_lines: pl.LazyFrame, orders: pl.LazyFrame, dim_product: pl.LazyFrame,
                    dim_customer: pl.LazyFrame, dim_warehouse: pl.LazyFrame) -> pl.LazyFrame:
    """One row per order line; product and customer keys point at the version valid at order time."""
    lines = order_lines.join(orders.select("order_id", "customer_id", "ordered_at"), on="order_id",
                             how="left")
    lines = point_in_time(lines, dim_product, key="product_id", at="ordered_at", sk="product_sk")
    lines = point_in_time(lines, dim_customer, key="customer_id", at="ordered_at", sk="customer_sk")
    return (
        lines.join(dim_warehouse.select("warehouse_id", "warehouse_sk"), on="warehouse_id", how="left")
        .select(
            "order_line_id", "order_id",
            pl.col("ordered_at").dt.date().alias("order_date"),
            _date_sk("ordered_at").alias("date_sk"),
            "ordered_at", "product_sk", "customer_sk",
            pl.col("warehouse_sk").fill_null(-1),
            "product_id", "customer_id", "warehouse_id",
            "quantity", "unit_price", "discount_pct",
            (pl.col("quantity") * pl.col("unit_price")).round(2).alias("net_amount"),
        )
        .sort("order_date", "order_line_id")
    )


def fct_inventory_daily(*, inventory_counts: pl.LazyFrame, dim_product: pl.LazyFrame,
                        dim_warehouse: pl.LazyFrame) -> pl.LazyFrame:
    counts = inventory_counts.with_columns(
        counted_at=pl.col("count_date").cast(pl.Datetime("us")) + pl.duration(hours=23, minutes=59))
    counts = point_in_time(counts, dim_product, key="product_id", at="counted_at", sk="product_sk")
    return (
        counts.join(dim_warehouse.select("warehouse_id", "warehouse_sk"), on="warehouse_id", how="left")
        .select("count_date", _date_sk("count_date").alias("date_sk"), "product_sk",
                pl.col("warehouse_sk").fill_null(-1), "product_id", "warehouse_id", "on_hand",
                (pl.col("on_hand") == 0).alias("is_stockout"))
        .sort("count_date", "warehouse_id", "product_id")
    )


def agg_sales_category_warehouse_daily(*, fct_order_lines: pl.LazyFrame,
                                       dim_product: pl.LazyFrame) -> pl.LazyFrame:
    return (
        fct_order_lines.join(dim_product.select("product_sk", "category"), on="product_sk", how="left")
        .group_by("order_date", "date_sk", "category", "warehouse_id")
        .agg(
            pl.col("quantity").sum().alias("units"),
            pl.col("net_amount").sum().round(2).alias("revenue"),
            pl.len().alias("order_lines"),
        )
        .sort("order_date", "category", "warehouse_id")
    )


def fct_forecast_accuracy(*, fct_demand_forecast: pl.LazyFrame | None,
                          fct_order_lines: pl.LazyFrame) -> pl.LazyFrame | None:
    """Each forecast whose target date has actuals, next to the units sold as known now.

    Built from the current fact table, so a late correction to a day's sales rewrites
    that target date's partition in the same run. Target dates after the last day with
    sales have no actuals yet and are left out.
    """
    if fct_demand_forecast is None:
        return None
    actuals = fct_order_lines.group_by("order_date", "product_id", "warehouse_id").agg(
        pl.col("quantity").sum().alias("actual_units"))
    last_actual = fct_order_lines.select(pl.col("order_date").max().alias("_last"))
    return (
        fct_demand_forecast
        .with_columns(pl.col("forecast_date").cast(pl.Date))
        .join(last_actual, how="cross").filter(pl.col("target_date") <= pl.col("_last"))
        .join(actuals, left_on=["target_date", "product_id", "warehouse_id"],
              right_on=["order_date", "product_id", "warehouse_id"], how="left")
        .select(
            "target_date", "date_sk", "forecast_date",
            (pl.col("target_date") - pl.col("forecast_date")).dt.total_days().cast(pl.Int32).alias("horizon_days"),
            "product_id", "warehouse_id", "model_version", "predicted_units",
            pl.col("actual_units").fill_null(0),
            (pl.col("predicted_units") - pl.col("actual_units").fill_null(0)).abs().round(3).alias("abs_error"),
        )
        .sort("target_date", "forecast_date", "product_id", "warehouse_id")
    )
