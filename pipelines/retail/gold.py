"""The retail star schema: pure builders, one per gold table (see ``configs/retail/gold.yaml``).

Each keyword parameter names an input table (gold if built earlier, else silver);
the framework in ``lakehouse.gold`` resolves, calls and publishes.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from lakehouse.delta import net
from lakehouse.gold import (
    date_dimension,
    in_ranges,
    key_ranges,
    on_dates,
    partitions_after_new_versions,
    partitions_with,
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
                    dim_customer: pl.LazyFrame, dim_warehouse: pl.LazyFrame,
                    partitions: list[date] | None = None) -> pl.LazyFrame:
    """One row per order line; product and customer keys point at the version valid at order time.

    With ``partitions``, only the lines of orders placed on those dates.
    """
    if partitions is not None:
        orders = on_dates(orders, "ordered_at", partitions)
        # the lines of those orders, found by order_id ranges (one per day) that the key-ordered
        # silver files can be skipped by, then exactly
        spans = (orders.group_by(pl.col("ordered_at").dt.date())
                 .agg(pl.col("order_id").min().alias("lo"), pl.col("order_id").max().alias("hi")).collect())
        order_lines = (order_lines.filter(in_ranges("order_id", spans))
                       .join(orders.select("order_id"), on="order_id", how="semi"))
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
                        dim_warehouse: pl.LazyFrame, partitions: list[date] | None = None) -> pl.LazyFrame:
    if partitions is not None:
        inventory_counts = on_dates(inventory_counts, "count_date", partitions)
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


def agg_sales_category_warehouse_daily(*, fct_order_lines: pl.LazyFrame, dim_product: pl.LazyFrame,
                                       partitions: list[date] | None = None) -> pl.LazyFrame:
    if partitions is not None:
        fct_order_lines = on_dates(fct_order_lines, "order_date", partitions)
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


def fct_forecast_accuracy(*, fct_demand_forecast: pl.LazyFrame | None, fct_order_lines: pl.LazyFrame,
                          partitions: list[date] | None = None) -> pl.LazyFrame | None:
    """Each forecast whose target date has actuals, next to the units sold as known now.

    Built from the current fact table, so a late correction to a day's sales rewrites
    that target date's partition in the same run. Target dates after the last day with
    sales have no actuals yet and are left out.
    """
    if fct_demand_forecast is None:
        return None
    # the last day with sales, as a value: kept in the plan (a cross join), the scan of the whole
    # fact it reads was shared with the partitions' scan below, so no date filter reached it and
    # a daily build at seed scale held 130 M order lines (5.7 GB for one date)
    last_actual = fct_order_lines.select(pl.col("order_date").max()).collect().item()
    if partitions is not None:
        fct_demand_forecast = on_dates(fct_demand_forecast, "target_date", partitions)
        fct_order_lines = on_dates(fct_order_lines, "order_date", partitions)
    actuals = fct_order_lines.group_by("order_date", "product_id", "warehouse_id").agg(
        pl.col("quantity").sum().alias("actual_units"))
    return (
        fct_demand_forecast
        .with_columns(pl.col("forecast_date").cast(pl.Date))
        .filter(pl.lit(last_actual is not None) & (pl.col("target_date") <= pl.lit(last_actual, pl.Date)))
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


# -- which partitions a run recomputes (``touched`` in gold.yaml) --------------------------------
# Each gets every changed row of each input (``changed_<input>``: old and new images, from
# Delta's change feed) and returns the partition values those changes can reach; a null
# makes the run compute the table in full. Over-reaching costs time, never correctness.


def _dates(frame: pl.LazyFrame, expr: pl.Expr, name: str) -> pl.LazyFrame:
    return frame.select(expr.alias(name)).unique()


def touched_fct_order_lines(*, changed_order_lines: pl.LazyFrame, changed_orders: pl.LazyFrame,
                            changed_dim_product: pl.LazyFrame, changed_dim_customer: pl.LazyFrame,
                            changed_dim_warehouse: pl.LazyFrame, orders: pl.LazyFrame,
                            fct_order_lines: pl.LazyFrame) -> pl.LazyFrame:
    """Order dates of changed lines (through their order: a line without one gives null) and of
    changed orders (both dates of a moved order); facts whose product or customer version a
    new dimension version moves; facts of a warehouse that appeared or went."""
    line_orders = changed_order_lines.select("order_id").unique().collect()
    their_orders = orders.filter(in_ranges("order_id", key_ranges(line_orders["order_id"])))
    of_lines = (line_orders.lazy().join(their_orders.select("order_id", "ordered_at"), on="order_id", how="left")
                .select(pl.col("ordered_at").dt.date().alias("order_date")))
    warehouses = net(changed_dim_warehouse, ["warehouse_id", "warehouse_sk"]).collect()["warehouse_id"]
    return pl.concat([
        of_lines,
        _dates(changed_orders, pl.col("ordered_at").dt.date(), "order_date"),
        partitions_after_new_versions(changed_dim_product, fct_order_lines, key="product_id",
                                      sk="product_sk", partition="order_date"),
        partitions_after_new_versions(changed_dim_customer, fct_order_lines, key="customer_id",
                                      sk="customer_sk", partition="order_date"),
        partitions_with(fct_order_lines, "warehouse_id", warehouses, partition="order_date"),
    ]).unique()


def touched_fct_inventory_daily(*, changed_inventory_counts: pl.LazyFrame, changed_dim_product: pl.LazyFrame,
                                changed_dim_warehouse: pl.LazyFrame,
                                fct_inventory_daily: pl.LazyFrame) -> pl.LazyFrame:
    warehouses = net(changed_dim_warehouse, ["warehouse_id", "warehouse_sk"]).collect()["warehouse_id"]
    return pl.concat([
        _dates(changed_inventory_counts, pl.col("count_date"), "count_date"),
        partitions_after_new_versions(changed_dim_product, fct_inventory_daily, key="product_id",
                                      sk="product_sk", partition="count_date"),
        partitions_with(fct_inventory_daily, "warehouse_id", warehouses, partition="count_date"),
    ]).unique()


def touched_agg_sales_category_warehouse_daily(*, changed_fct_order_lines: pl.LazyFrame,
                                               changed_dim_product: pl.LazyFrame,
                                               fct_order_lines: pl.LazyFrame) -> pl.LazyFrame:
    """Dates of changed facts, and of facts whose product version changed category in place.

    A version that appeared or went moved its facts onto another key, so they are changed
    facts already; only a key kept with a new category (an inferred member completed, a
    corrected record) needs the facts looked up.
    """
    recategorised = (net(changed_dim_product, ["product_sk", "category"]).group_by("product_sk")
                     .agg(pl.len().alias("images")).filter(pl.col("images") > 1).collect()["product_sk"])
    return pl.concat([
        _dates(changed_fct_order_lines, pl.col("order_date"), "order_date"),
        partitions_with(fct_order_lines, "product_sk", recategorised, partition="order_date"),
    ]).unique()


def touched_fct_forecast_accuracy(*, changed_fct_demand_forecast: pl.LazyFrame,
                                  changed_fct_order_lines: pl.LazyFrame, fct_demand_forecast: pl.LazyFrame,
                                  fct_order_lines: pl.LazyFrame,
                                  fct_forecast_accuracy: pl.LazyFrame) -> pl.LazyFrame:
    """Target dates of changed forecasts and of changed sales, and the dates that the last day
    with sales brings in (forecasts now with actuals) or takes out."""
    last_actual = fct_order_lines.select(pl.col("order_date").max()).collect().item()
    last_scored = fct_forecast_accuracy.select(pl.col("target_date").max()).collect().item()
    if last_actual is None:
        return pl.LazyFrame({"target_date": [None]}, schema={"target_date": pl.Date})  # in full
    newly = fct_demand_forecast.filter(pl.col("target_date") <= last_actual)
    if last_scored is not None:
        newly = newly.filter(pl.col("target_date") > last_scored)
    return pl.concat([
        _dates(changed_fct_demand_forecast, pl.col("target_date"), "target_date"),
        _dates(changed_fct_order_lines, pl.col("order_date"), "target_date"),
        _dates(newly, pl.col("target_date"), "target_date"),
        _dates(fct_forecast_accuracy.filter(pl.col("target_date") > last_actual), pl.col("target_date"),
               "target_date"),
    ]).unique()
