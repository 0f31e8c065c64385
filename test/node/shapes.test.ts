import { describe, expect, it } from "vitest";
import { categoriesAllKey, categoryKey, categoryVersionKey } from "../../src/domain/categories";
import {
  productKey,
  productListKey,
  productVersionKey,
  productWarmable,
} from "../../src/domain/products";
import { idOfShapedKey, keysOfEveryShape, SHAPES, shaped } from "../../src/domain/shapes";
import { userKey, userVersionKey, userWarmable } from "../../src/domain/users";

describe("shape generations (src/domain/shapes.ts)", () => {
  it("generation 1 is the key as it always was; later ones add @n", () => {
    expect(shaped("product:42", 1)).toBe("product:42");
    expect(shaped("product:42", 2)).toBe("product:42@2");
    expect(() => shaped("product:42", 0)).toThrow(RangeError);
    expect(() => shaped("product:42", 1.5)).toThrow(RangeError);
  });

  it("keys carry the generation, version keys never do (every release shares them)", () => {
    expect(productKey(42, 3)).toBe("product:42@3");
    expect(productVersionKey(42)).toBe("product:42");
    expect(categoryKey(7, 2)).toBe("category:7@2");
    expect(categoryVersionKey(7)).toBe("category:7");
    expect(categoriesAllKey(2)).toBe("categories:all@2");
    expect(userKey(5, 4)).toBe("user:5@4");
    expect(userVersionKey(5)).toBe("user:5");
    expect(productListKey({ category: 3, cursor: undefined, size: 20 }, 2)).toBe(
      "products:list:3:0:20@2",
    );
    // Today's generations: the keys the entries were cached under before generations existed.
    expect(productKey(42)).toBe(shaped("product:42", SHAPES.product));
    expect(userKey(5)).toBe(shaped("user:5", SHAPES.user));
  });

  it("maps a key of one generation back to its id, and no other generation's", () => {
    expect(idOfShapedKey("product:42@2", "product:", 2)).toBe(42);
    expect(idOfShapedKey("product:42", "product:", 2)).toBeNull();
    expect(idOfShapedKey("product:42@2", "product:", 1)).toBeNull();
    expect(idOfShapedKey("product:42@3", "product:", 2)).toBeNull();
    expect(idOfShapedKey("product:042", "product:", 1)).toBeNull();
    expect(idOfShapedKey("product:2147483648", "product:", 1)).toBeNull();
    expect(idOfShapedKey("products:list:3:0:20", "product:", 1)).toBeNull();
    expect(productWarmable.parse(productKey(42))).toBe(42);
    expect(userWarmable.parse(userKey(5))).toBe(5);
    expect(userWarmable.parse(userKey(5, SHAPES.user + 1))).toBeNull();
  });

  it("an admin purge by key names the key under every generation up to the highest", () => {
    expect(keysOfEveryShape(["a", "b"], 1)).toEqual(["a", "b"]);
    expect(keysOfEveryShape(["product:42"], 3)).toEqual([
      "product:42",
      "product:42@2",
      "product:42@3",
    ]);
    expect(keysOfEveryShape(["k"])).toHaveLength(Math.max(...Object.values(SHAPES)));
  });
});
